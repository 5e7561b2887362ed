"""Local model servers take turns on the CPU.

llama.cpp's CPU threads wait for one another by spinning, so two servers computing at once on the
same cores are slower together than the same requests one after the other: on two cores, calls to
the 1.5B model that took 4 to 11 s alone took 100 to 130 s each while the 0.5B model's server
answered other requests. Each request to a one-slot local server (the default; such a server
answers one request at a time anyway) therefore holds a machine-wide lock while it is answered, so
a judge on one model and a task program on another, or two runs on one machine, queue instead of
thrashing. ``PROMPTOPT_LOCAL_TURNS=0`` turns this off (servers pinned to cores of their own do not
need it); a server with several slots was asked for parallel answers and never takes turns.

The lock is a file lock (``filelock``), so it holds across processes and across threads alike.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock

ENV = "PROMPTOPT_LOCAL_TURNS"

# Short enough not to slow requests of a fraction of a second; filelock polls at this interval.
_POLL_S = 0.005


def lock_path() -> Path:
    """The machine-wide lock file, shared by every process of this user (not by cache directory:
    test sessions with caches of their own still share the cores)."""
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"promptopt-{uid}-local-compute.lock"


def turns_enabled() -> bool:
    return os.environ.get(ENV, "1").strip() not in ("0", "false", "no", "off")


@functools.cache
def _lock(path: Path) -> FileLock:
    # One FileLock per path in the process; it is thread-local, so each thread takes the file lock
    # through a descriptor of its own and threads exclude one another as processes do.
    return FileLock(path, thread_local=True)


@contextmanager
def compute_turn(*, enabled: bool = True) -> Iterator[None]:
    """Hold the machine's turn on the CPU for one local request (a no-op when turns are off)."""
    if not (enabled and turns_enabled()):
        yield
        return
    with _lock(lock_path()).acquire(poll_interval=_POLL_S):
        yield
