"""A persistent SQLite cache of LM replies, keyed on the full request.

The key is a SHA-256 of the canonical JSON of everything that shapes the reply:
model, messages, sampling options and the *rollout id*. Two identical requests
share one reply; a different rollout id asks for a fresh sample of the same
request (and is itself cached, so re-running an experiment replays it).
Several threads and processes may share one file (WAL journal).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from promptopt.lm.base import Completion


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
        with self._conn() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS completions ("
                " key TEXT PRIMARY KEY, request TEXT NOT NULL, completion TEXT NOT NULL,"
                " created REAL NOT NULL)"
            )

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def get(self, key: str) -> Completion | None:
        row = self._conn().execute("SELECT completion FROM completions WHERE key=?", (key,)).fetchone()
        with self._lock:
            if row is None:
                self.misses += 1
                return None
            self.hits += 1
        data = json.loads(row[0])
        data["cached"] = True
        return Completion.from_dict(data)

    def put(self, key: str, request: dict[str, Any], completion: Completion) -> None:
        self._conn().execute(
            "INSERT OR REPLACE INTO completions (key, request, completion, created) VALUES (?,?,?,?)",
            (
                key,
                json.dumps(request, sort_keys=True, default=str),
                json.dumps(completion.to_dict()),
                time.time(),
            ),
        )

    def merge_from(self, other: str | os.PathLike[str]) -> int:
        """Copy the entries of the cache file ``other`` that this one lacks; returns how many."""
        conn = self._conn()
        before = len(self)
        conn.execute("ATTACH DATABASE ? AS other", (str(other),))
        try:
            conn.execute("INSERT OR IGNORE INTO completions SELECT * FROM other.completions")
        finally:
            conn.execute("DETACH DATABASE other")
        return len(self) - before

    def __len__(self) -> int:
        return self._conn().execute("SELECT COUNT(*) FROM completions").fetchone()[0]

    def clear(self) -> None:
        self._conn().execute("DELETE FROM completions")

    def __deepcopy__(self, memo: dict[int, Any]) -> Cache:
        return self

    def __getstate__(self) -> dict[str, Any]:
        return {"path": str(self.path)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])  # type: ignore[misc]
