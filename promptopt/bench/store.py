"""Where a LangProBe experiment keeps its results.

Layout of the output directory (default ``runs/langprobe/<name>``)::

    spec.json                         the last spec run here
    cells/<cell-key>.json             one finished cell (written atomically when it finishes), with
                                      its identity (reused only by the same experiment) and provenance
    baselines/<baseline-key>.json     the seed program on val and test, shared by a cell's optimizers
    runs/<cell-key>/                  the optimizer's own run directory (state for resume, events),
                                      kept for a resume only by a cell of the same identity
    report.md, report.csv, charts/    rebuilt from cells/ by ``python -m promptopt.bench report``

A cell key is ``<task>__<program>__<optimizer>__<lm>__s<seed>``; a baseline key drops the optimizer.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from promptopt.io import LockBusyError, file_lock, hold_lock, write_json_atomic

# Keys a stored cell must have to be read; a finished one also carries its numbers.
_CELL_KEYS = ("key", "status", "config")
_FINISHED_KEYS = ("baseline", "optimized", "lift", "budget", "splits")
_CONFIG_KEYS = ("task", "program", "optimizer", "lm", "seed")


class UnreadableRecordError(ValueError):
    """A stored cell or baseline file that is not a record this code can read."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(
            f"{path} is not a readable record ({reason}). `bench langprobe` on this folder moves it aside "
            f"and runs the cell again; `bench report` leaves it out and lists it."
        )


class Store:
    def __init__(self, out: str | os.PathLike[str]) -> None:
        self.root = Path(out)
        self.unreadable: list[UnreadableRecordError] = []  # filled by cells()

    @property
    def cells_dir(self) -> Path:
        return self.root / "cells"

    @property
    def baselines_dir(self) -> Path:
        return self.root / "baselines"

    def cell_path(self, key: str) -> Path:
        return self.cells_dir / f"{key}.json"

    def baseline_path(self, key: str) -> Path:
        return self.baselines_dir / f"{key}.json"

    def run_dir(self, key: str) -> Path:
        return self.root / "runs" / key

    # --- cells --------------------------------------------------------------------
    def load_cell(self, key: str) -> dict[str, Any] | None:
        """The stored cell, ``None`` when there is none; raises :class:`UnreadableRecordError`."""
        return _read(self.cell_path(key), _cell_problem)

    def save_cell(self, key: str, record: dict[str, Any]) -> Path:
        _set_aside_if_unreadable(self.cell_path(key), _cell_problem)
        return write_json_atomic(self.cell_path(key), record)

    def cells(self) -> list[dict[str, Any]]:
        """Every readable stored cell, in key order; the unreadable ones are in ``unreadable``."""
        self.unreadable = []
        if not self.cells_dir.is_dir():
            return []
        out = []
        for path in sorted(self.cells_dir.glob("*.json")):
            try:
                record = _read(path, _cell_problem)
            except UnreadableRecordError as exc:
                self.unreadable.append(exc)
                continue
            if record is not None:
                out.append(record)
        return out

    @contextlib.contextmanager
    def claim(self, key: str) -> Iterator[bool]:
        """Hold cell ``key`` for this process while it runs: yields ``False`` at once when another
        process (another run on the same folder) holds it, so two runs split the cells instead of
        both running one. The lock is released when the block ends or the process dies."""
        try:
            lock = hold_lock(self.root / "locks" / f"{key}.cell.lock")
        except LockBusyError:
            yield False
            return
        try:
            yield True
        finally:
            lock.release()

    # --- shared baselines ---------------------------------------------------------
    def load_baseline(self, key: str) -> dict[str, Any] | None:
        return _read(self.baseline_path(key), _baseline_problem)

    def save_baseline(self, key: str, record: dict[str, Any]) -> Path:
        _set_aside_if_unreadable(self.baseline_path(key), _baseline_problem)
        return write_json_atomic(self.baseline_path(key), record)

    def lock(self, key: str) -> contextlib.AbstractContextManager[None]:
        """Hold ``key`` across processes (workers sharing one baseline compute it once)."""
        return file_lock(self.root / "locks" / f"{key}.lock")

    def save_spec(self, spec: dict[str, Any]) -> Path:
        return write_json_atomic(self.root / "spec.json", spec)


def _cell_problem(record: Any) -> str | None:
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not an object"
    missing = [k for k in _CELL_KEYS if k not in record]
    if not missing and not isinstance(record["config"], dict):
        return "its config is not an object"
    if not missing:
        missing = [f"config.{k}" for k in _CONFIG_KEYS if k not in record["config"]]
    if not missing and record["status"] == "ok":
        missing = [k for k in _FINISHED_KEYS if k not in record]
    return f"missing {', '.join(missing)}" if missing else None


def _baseline_problem(record: Any) -> str | None:
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not an object"
    missing = [k for k in ("key", "config", "splits", "val", "test") if k not in record]
    return f"missing {', '.join(missing)}" if missing else None


def _read(path: Path, problem: Any) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as exc:
        raise UnreadableRecordError(path, f"not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    except json.JSONDecodeError as exc:  # writes are atomic, so this is a damaged or hand-edited file
        raise UnreadableRecordError(path, f"not valid JSON: {exc.msg} at line {exc.lineno}") from exc
    why = problem(record)
    if why is not None:
        raise UnreadableRecordError(path, why)
    return record


def _set_aside_if_unreadable(path: Path, problem: Any) -> None:
    """Keep an unreadable file under another name before a new record replaces it: a damaged
    file may still be worth reading by hand, and nothing is lost by keeping it."""
    try:
        _read(path, problem)
    except UnreadableRecordError:
        path.rename(path.with_name(f"{path.name}.unreadable-{time.strftime('%Y%m%dT%H%M%S')}"))
