"""Where a LangProBe experiment keeps its results.

Layout of the output directory (default ``runs/langprobe/<name>``)::

    spec.json                         the last spec run here
    cells/<cell-key>.json             one finished cell (written atomically when it finishes), with
                                      its identity (reused only by the same experiment) and provenance
    baselines/<baseline-key>.json     the seed program on val and test, shared by a cell's optimizers
    runs/<cell-key>/                  the optimizer's own run directory (state for resume, events),
                                      kept for a resume only by a cell of the same identity
    report.md, report.csv, charts/    rebuilt from cells/ by ``python -m promptopt.bench report``

The records are :class:`~promptopt.bench.records.CellRecord` and
:class:`~promptopt.bench.records.BaselineRecord`. A cell key is
``<task>__<program>__<optimizer>__<lm>__s<seed>``; a baseline key drops the optimizer.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from promptopt.bench.records import BaselineRecord, CellRecord, RecordError
from promptopt.io import LockBusyError, file_lock, hold_lock, write_json_atomic

_Record = TypeVar("_Record", CellRecord, BaselineRecord)


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
    def load_cell(self, key: str) -> CellRecord | None:
        """The stored cell, ``None`` when there is none; raises :class:`UnreadableRecordError`."""
        return _read(self.cell_path(key), CellRecord)

    def save_cell(self, record: CellRecord) -> Path:
        _set_aside_if_unreadable(self.cell_path(record.key), CellRecord)
        return write_json_atomic(self.cell_path(record.key), record.to_dict())

    def cells(self) -> list[CellRecord]:
        """Every readable stored cell, in key order; the unreadable ones are in ``unreadable``."""
        self.unreadable = []
        if not self.cells_dir.is_dir():
            return []
        out = []
        for path in sorted(self.cells_dir.glob("*.json")):
            try:
                record = _read(path, CellRecord)
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
    def load_baseline(self, key: str) -> BaselineRecord | None:
        return _read(self.baseline_path(key), BaselineRecord)

    def save_baseline(self, record: BaselineRecord) -> Path:
        _set_aside_if_unreadable(self.baseline_path(record.key), BaselineRecord)
        return write_json_atomic(self.baseline_path(record.key), record.to_dict())

    def lock(self, key: str) -> contextlib.AbstractContextManager[None]:
        """Hold ``key`` across processes (workers sharing one baseline compute it once)."""
        return file_lock(self.root / "locks" / f"{key}.lock")

    def save_spec(self, spec: dict[str, Any]) -> Path:
        return write_json_atomic(self.root / "spec.json", spec)


def _read(path: Path, kind: type[_Record]) -> _Record | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as exc:
        raise UnreadableRecordError(path, f"not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    except json.JSONDecodeError as exc:  # writes are atomic, so this is a damaged or hand-edited file
        raise UnreadableRecordError(path, f"not valid JSON: {exc.msg} at line {exc.lineno}") from exc
    try:
        return kind.from_dict(record)
    except RecordError as exc:
        raise UnreadableRecordError(path, exc.reason) from exc
    except (TypeError, ValueError, KeyError, AttributeError) as exc:  # a field of the wrong kind
        raise UnreadableRecordError(path, f"a malformed field: {type(exc).__name__}: {exc}") from exc


def _set_aside_if_unreadable(path: Path, kind: type[CellRecord] | type[BaselineRecord]) -> None:
    """Keep an unreadable file under another name before a new record replaces it: a damaged
    file may still be worth reading by hand, and nothing is lost by keeping it."""
    try:
        _read(path, kind)
    except UnreadableRecordError:
        path.rename(path.with_name(f"{path.name}.unreadable-{time.strftime('%Y%m%dT%H%M%S')}"))
