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
from pathlib import Path
from typing import Any

from promptopt.core.files import file_lock
from promptopt.core.program import write_json_atomic


class Store:
    def __init__(self, out: str | os.PathLike[str]) -> None:
        self.root = Path(out)

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
        return _read(self.cell_path(key))

    def save_cell(self, key: str, record: dict[str, Any]) -> Path:
        return write_json_atomic(self.cell_path(key), record)

    def cells(self) -> list[dict[str, Any]]:
        """Every stored cell, in key order."""
        if not self.cells_dir.is_dir():
            return []
        out = []
        for path in sorted(self.cells_dir.glob("*.json")):
            record = _read(path)
            if record is not None:
                out.append(record)
        return out

    # --- shared baselines ---------------------------------------------------------
    def load_baseline(self, key: str) -> dict[str, Any] | None:
        return _read(self.baseline_path(key))

    def save_baseline(self, key: str, record: dict[str, Any]) -> Path:
        return write_json_atomic(self.baseline_path(key), record)

    def lock(self, key: str) -> contextlib.AbstractContextManager[None]:
        """Hold ``key`` across processes (workers sharing one baseline compute it once)."""
        return file_lock(self.root / "locks" / f"{key}.lock")

    def save_spec(self, spec: dict[str, Any]) -> Path:
        return write_json_atomic(self.root / "spec.json", spec)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as exc:  # writes are atomic, so this is a foreign or hand-edited file
        raise ValueError(f"{path} is not valid JSON ({exc}); move it away to recompute it.") from exc
