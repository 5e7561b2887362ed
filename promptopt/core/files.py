"""File helpers shared by everything that coordinates processes through the file system."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def file_lock(path: Path | None) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` across processes (``None``: no lock, for in-memory runs).

    The lock is advisory (``flock``) and released when the block ends or the process dies, so a killed
    process never leaves a stale lock behind.
    """
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
