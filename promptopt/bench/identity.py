"""When a stored cell is the same experiment as the one asked for.

A cell's identity is everything its numbers depend on: its config (task, program, optimizer, sizes,
budget, ...), the data its splits came from (the sha256 of the task's files in the mirror and of the
drawn examples themselves), the identity of every LM it called (the local model file's sha256, or
the API model string) and the code (the sha256 of the promptopt and langprobe sources in the scope
of the cell's optimizer: see :mod:`promptopt.bench.code_scope`). A stored cell is reused only when
all four match; otherwise it is run again, and the run says which part changed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from promptopt.bench.code_scope import SourceScopes, current_scopes, scoped_from_full_hash
from promptopt.provenance import files_sha256
from promptopt.tasks import get_task, task_dir

PARTS = ("config", "data", "lms", "code")


@dataclass(frozen=True)
class CellIdentity:
    """What a cell's numbers depend on. ``code`` may be given as the running code's
    :class:`SourceScopes`; the identity keeps the scope of its config's optimizer (the seed
    program's scores, whose config names none, keep the shared scope)."""

    config: dict[str, Any]
    data: dict[str, Any]
    lms: dict[str, dict[str, Any]]
    code: Any  # {"scope": ..., "sources_sha256": ...}

    def __post_init__(self) -> None:
        if isinstance(self.code, SourceScopes):
            object.__setattr__(self, "code", self.code.for_optimizer(self.config.get("optimizer")))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def sha256(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def changed_parts(self, stored: Mapping[str, Any] | None) -> list[str]:
        """The parts of ``stored`` (a stored identity dict) that differ from this one; all of them
        when nothing was stored."""
        if not isinstance(stored, Mapping):
            return list(PARTS)
        mine = json.loads(json.dumps(self.to_dict(), default=str))  # as it reads back from JSON
        theirs = dict(stored)
        if isinstance(theirs.get("code"), str):  # stored with the hash of all sources
            theirs["code"] = scoped_from_full_hash(theirs["code"], self.config.get("optimizer"))
        return [part for part in PARTS if theirs.get(part) != mine[part]]


def splits_sha256(splits: Any) -> str:
    """sha256 of the drawn train/val/test examples, fields and input keys included."""
    h = hashlib.sha256()
    for name in ("train", "val", "test"):
        for example in getattr(splits, name):
            h.update(name.encode())
            h.update(json.dumps(example.to_dict(), sort_keys=True, default=str).encode())
    return h.hexdigest()


def _stamp(folder: Path | None) -> tuple[tuple[str, int, int], ...]:
    """(name, size, mtime) of every file: a cache key that changes when the data is edited."""
    if folder is None:
        return ()
    return tuple(
        (str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()
    )


@functools.lru_cache(maxsize=64)
def _files_sha256(folder: str, stamp: tuple[tuple[str, int, int], ...]) -> str:
    return files_sha256(folder)["sha256"]


@functools.lru_cache(maxsize=256)
def _data_identity_json(
    task: str,
    data_dir: str | None,
    split_seed: int,
    sizes: tuple[int, ...],
    stamp: tuple[tuple[str, int, int], ...],
    source_identity: str | None,
) -> str:
    folder = task_dir(task, data_dir)
    identity: dict[str, Any] = {
        "task": task,
        "files_sha256": None if folder is None else _files_sha256(str(folder), stamp),
        "splits_sha256": splits_sha256(get_task(task).splits(data_dir, seed=split_seed, sizes=sizes)),
    }
    if source_identity is not None:
        identity["source"] = json.loads(source_identity)
    return json.dumps(identity)


def data_identity(
    task: str, data_dir: str | os.PathLike[str] | None, split_seed: int, sizes: tuple[int, ...]
) -> dict[str, Any]:
    """What a cell's examples came from: the sha256 of every file of ``task`` in the data mirror
    (``None`` when they came from the hub) and of the drawn train/val/test examples; for a task
    whose data lives elsewhere (a task app), what it says it is (its name, seed prompts and split
    ids), which is also part of the cache key, so an app redeployed with other prompts is seen."""
    folder = task_dir(task, data_dir)
    key = None if data_dir is None else str(data_dir)
    describe = getattr(get_task(task), "identity", None)
    source = json.dumps(describe(), sort_keys=True) if callable(describe) else None
    return json.loads(_data_identity_json(task, key, split_seed, tuple(sizes), _stamp(folder), source))


def code_identity() -> SourceScopes:
    """The running code's source hashes, one per scope (a :class:`CellIdentity` keeps its own)."""
    return current_scopes()


def experiment_provenance(
    task: str,
    split_seed: int,
    sizes: tuple[int, ...],
    lms: dict[str, Any],
    data_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """The provenance block (as stored) of an experiment script's result on one task: code, packages, machine,
    command, the identity of each LM (role -> model string or LM object) and of the drawn data."""
    from promptopt.lm.identity import lm_identity
    from promptopt.provenance import collect

    return collect(
        lms={role: lm_identity(lm) for role, lm in lms.items()},
        data={task: data_identity(task, data_dir, split_seed, tuple(sizes))},
    ).to_dict()
