"""A persistent SQLite cache of LM replies, keyed on the full request.

The key is a SHA-256 of the canonical JSON of everything that shapes the reply:
model, messages, sampling options and the *rollout id*. Two identical requests
share one reply; a different rollout id asks for a fresh sample of the same
request (and is itself cached, so re-running an experiment replays it).
Several threads and processes may share one file (WAL journal).

A damaged file is refused when opened: ``PRAGMA quick_check`` runs once per file and process
(0.1-0.5 s for 100 MB) and any damage it finds, or a file that is not SQLite at all, raises
:class:`CacheCorruptError` naming the file and the way out. Damage that appears later, or that
the check cannot see, is met at read or write time: that call bypasses the cache (see
:meth:`Cache.get`) and one :class:`CacheWarning` names the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
import warnings
from pathlib import Path
from typing import Any

from promptopt.lm_protocol import Completion, LMError

# SQLite's primary result codes for a damaged file and for a file that is not a database.
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26


class CacheError(LMError):
    """The LM response cache file cannot be used (not writable, locked, disk full, damaged...)."""


class CacheCorruptError(CacheError):
    """The LM response cache file is damaged or is not an SQLite database."""


class CacheWarning(RuntimeWarning):
    """A cache read or write failed during a run; the call went to the model instead."""


def _is_corruption(exc: BaseException) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text


def _way_out(path: Path) -> str:
    path = path.absolute()
    return (
        f"Move it aside together with any {path.name}-wal and {path.name}-shm beside it "
        f"(e.g. `mv {path} {path}.broken`; the next run starts an empty cache and asks the model "
        "again), or pass cache=False or another cache path to LM(...)."
    )


def _unusable(path: Path, exc: BaseException, doing: str) -> CacheError:
    """The one error a failure of the cache file at ``path`` becomes: which file, what is wrong,
    what to do."""
    path = path.absolute()
    if _is_corruption(exc):
        return CacheCorruptError(
            f"The LM response cache {path} is damaged (found when {doing}: {exc}). {_way_out(path)}"
        )
    return CacheError(
        f"The LM response cache {path} cannot be used (found when {doing}: {type(exc).__name__}: {exc}). "
        "Check that its folder is writable, the disk is not full and no other process holds it "
        "locked for long, or pass cache=False or another cache path to LM(...)."
    )


def _quick_check(conn: sqlite3.Connection) -> list[str]:
    """The problems ``PRAGMA quick_check`` reports (empty when the file is sound). It reads every
    page, so it finds damaged b-tree pages; it cannot see altered bytes inside a row, which
    :meth:`Cache.get` meets when it decodes the row."""
    rows = [r[0] for r in conn.execute("PRAGMA quick_check(20)").fetchall()]
    return [] if rows == ["ok"] else rows


def _read_through(path: Path) -> None:
    """Read the file once, sequentially, so the OS caches it. quick_check visits pages in b-tree
    order, which on a file not yet in memory is a slow scatter of small reads: on 100 MB, opening
    from cold took 3.1 s without this pass and 0.2-0.5 s with it (0.1-0.2 s when already cached)."""
    buf = bytearray(1 << 20)
    try:
        with open(path, "rb", buffering=0) as fh:
            while fh.readinto(buf):
                pass
    except OSError:
        pass  # only a speed-up; quick_check reports what matters


# The files this process found sound, as (device, inode, size, mtime): an LM is often built many
# times over one shared cache file, and the check reads all of it. A file changed since (written
# back from its WAL, replaced, damaged) is checked again.
_checked: set[tuple[int, int, int, int]] = set()
_warned: set[Path] = set()  # files whose failures during a run were reported
_checked_lock = threading.Lock()


def default_cache_dir() -> Path:
    root = os.environ.get("PROMPTOPT_CACHE_DIR")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "promptopt"


def request_key(request: dict[str, Any]) -> str:
    blob = json.dumps(request, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class Cache:
    """``get(key)`` / ``put(key, completion)`` over one SQLite file."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path else default_cache_dir() / "lm_cache.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        try:
            conn = self._conn()
            self._check(conn)
            conn.execute(
                "CREATE TABLE IF NOT EXISTS completions ("
                " key TEXT PRIMARY KEY, request TEXT NOT NULL, completion TEXT NOT NULL,"
                " created REAL NOT NULL)"
            )
        except sqlite3.DatabaseError as exc:
            self.close()
            raise _unusable(self.path, exc, "opening it") from exc
        except BaseException:
            self.close()
            raise

    def _check(self, conn: sqlite3.Connection) -> None:
        st = self.path.stat()
        ident = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        with _checked_lock:
            if ident in _checked:
                return
        _read_through(self.path)
        problems = _quick_check(conn)
        if problems:
            shown = "; ".join(p.replace("\n", " ") for p in problems[:3])
            raise CacheCorruptError(
                f"The LM response cache {self.path.absolute()} is damaged (PRAGMA quick_check: {shown}). "
                f"{_way_out(self.path)}"
            )
        with _checked_lock:
            _checked.add(ident)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    def _bypass(self, doing: str, exc: BaseException) -> None:
        """Warn, once per file and process, that ``doing`` failed and calls go to the model."""
        with _checked_lock:
            if self.path in _warned:
                return
            _warned.add(self.path)
        damaged = _is_corruption(exc) or not isinstance(exc, sqlite3.DatabaseError)
        advice = (
            f"The file looks damaged; once this run is over, {_way_out(self.path)[0].lower()}"
            f"{_way_out(self.path)[1:]}"
            if damaged
            else "Check that its folder is writable and the disk is not full."
        )
        warnings.warn(
            f"The LM response cache {self.path.absolute()} failed while {doing} "
            f"({type(exc).__name__}: {exc}); such calls go to the model instead, "
            f"and are not reported again. {advice}",
            CacheWarning,
            stacklevel=4,
        )

    def get(self, key: str) -> Completion | None:
        """The cached reply of ``key``, or None.

        A read that fails (a damaged page, a row that no longer decodes, a locked or unreadable
        file) is a miss and warns once: the call then goes to the model, exactly as for a key never
        cached. Raising instead would not stop the run: an evaluation records any exception of a
        program as that example's failure, so a cache fault would silently score examples 0.
        """
        try:
            row = self._conn().execute("SELECT completion FROM completions WHERE key=?", (key,)).fetchone()
            completion = None if row is None else _decode(row[0])
        except (sqlite3.DatabaseError, ValueError, TypeError) as exc:
            self._bypass("reading a reply", exc)
            completion = None
        with self._lock:
            if completion is None:
                self.misses += 1
                return None
            self.hits += 1
        return completion

    def put(self, key: str, request: dict[str, Any], completion: Completion) -> None:
        """Store a reply; a write that fails warns once (see :meth:`get`) and the reply is not kept."""
        try:
            self._conn().execute(
                "INSERT OR REPLACE INTO completions (key, request, completion, created) VALUES (?,?,?,?)",
                (
                    key,
                    json.dumps(request, sort_keys=True, default=str),
                    json.dumps(completion.to_dict()),
                    time.time(),
                ),
            )
        except sqlite3.DatabaseError as exc:
            self._bypass("storing a reply", exc)

    def merge_from(self, other: str | os.PathLike[str]) -> int:
        """Copy the entries of the cache file ``other`` that this one lacks; returns how many."""
        try:
            conn = self._conn()
            before = len(self)
            conn.execute("ATTACH DATABASE ? AS other", (str(other),))
            try:
                conn.execute("INSERT OR IGNORE INTO completions SELECT * FROM other.completions")
            finally:
                conn.execute("DETACH DATABASE other")
            return len(self) - before
        except sqlite3.DatabaseError as exc:
            kind = CacheCorruptError if _is_corruption(exc) else CacheError
            raise kind(
                f"Merging the LM response cache {Path(other).absolute()} into {self.path.absolute()} "
                f"failed ({type(exc).__name__}: {exc}). Opening each with Cache(path) tells which one "
                "is at fault (a damaged file is refused, and the error says what to do)."
            ) from exc

    def __len__(self) -> int:
        try:
            return self._conn().execute("SELECT COUNT(*) FROM completions").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise _unusable(self.path, exc, "counting its entries") from exc

    def clear(self) -> None:
        try:
            self._conn().execute("DELETE FROM completions")
        except sqlite3.DatabaseError as exc:
            raise _unusable(self.path, exc, "clearing it") from exc

    def __deepcopy__(self, memo: dict[int, Any]) -> Cache:
        return self

    def __getstate__(self) -> dict[str, Any]:
        return {"path": str(self.path)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])  # type: ignore[misc]


def _decode(blob: str) -> Completion:
    data = json.loads(blob)
    if not isinstance(data, dict) or not isinstance(data.get("text"), str):
        raise ValueError("the stored reply is not a completion")
    data["cached"] = True
    return Completion.from_dict(data)
