"""Files that several processes share: atomic JSON writes and exclusive locks.

The bottom layer of the package: it imports nothing from promptopt, so every layer may use it.
Locks come from the ``filelock`` package (``flock`` on Unix, ``msvcrt`` locking on Windows): they
are released when the block ends or the process dies, so a killed process never leaves a stale
lock behind.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

__all__ = [
    "STALE_TEMP_SECONDS",
    "LockBusyError",
    "file_lock",
    "hold_lock",
    "json_safe",
    "remove_stale_temp_files",
    "write_json_atomic",
]


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> Path:
    """Write JSON so a reader never sees a half-written file, even after a kill.

    The data goes to a temp file beside the target (``.<name>.XXXXXXXX.tmp``) that then replaces it;
    temp files a killed writer left there are removed (:func:`remove_stale_temp_files`).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, ensure_ascii=False, default=str)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    remove_stale_temp_files(target)
    return target


# A writer refreshes its temp file's mtime with every chunk it writes and replaces the target right
# after the last one, so a temp file untouched this long has no writer left.
STALE_TEMP_SECONDS = 300.0


def remove_stale_temp_files(path: str | os.PathLike[str], max_age_s: float = STALE_TEMP_SECONDS) -> int:
    """Remove the temp files :func:`write_json_atomic` left beside ``path`` (a killed writer's) that
    were last written more than ``max_age_s`` seconds ago; returns how many. Age, not the writer's
    pid, decides: pids are reused, and a run folder may be shared by processes on other machines.
    Never raises: a file that vanished or cannot be removed is left to a later call."""
    target = Path(path)
    # exactly the names mkstemp gives for this target: prefix, 8 characters, suffix
    pattern = re.compile(rf"\.{re.escape(target.name)}\.[a-z0-9_]{{8}}\.tmp")
    removed = 0
    cutoff = time.time() - max_age_s
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return 0
    for entry in entries:
        if not pattern.fullmatch(entry.name):
            continue
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime <= cutoff:
                os.unlink(entry.path)
                removed += 1
        except OSError:
            continue
    return removed


class LockBusyError(RuntimeError):
    """Another process holds the lock (raised by :func:`hold_lock` instead of waiting)."""


@contextlib.contextmanager
def file_lock(path: Path | None) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` across processes, waiting for it (``None``: no lock, for
    in-memory runs). Two holders in one process also exclude each other."""
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path, thread_local=False):
        yield


def hold_lock(path: Path) -> FileLock:
    """Take the lock on ``path`` now or raise :class:`LockBusyError`; the caller releases it with
    ``.release()`` (it is also released when the process dies)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path, thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise LockBusyError(f"{path} is held by another process") from None
    return lock


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by None, so it is standard JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
