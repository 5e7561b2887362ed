"""Run stored cells again and check that their numbers come back exactly.

A cell is rerun from its stored config into a scratch folder, with the same LMs and therefore the
same LM response cache, so every request that the first run made is answered as it was then. With
the same code and data every number must come back: the seed and optimized programs' per-example test
scores, the lift and its interval, the validation scores, the metric calls, the learning curve and
the adopted components. Wall time, token timing and dates are not compared. A difference means the
stored number cannot be reproduced from what is recorded (a change in code or data, a cache that
lost entries, or nondeterminism in an optimizer), and the report names the field.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptopt.bench.lms import LMs
from promptopt.bench.records import BaselineRecord, CellNumbers, CellRecord
from promptopt.bench.runner import cell_identity, run_cell
from promptopt.bench.spec import Cell, ExperimentSpec
from promptopt.bench.store import Store
from promptopt.lm.cache import Cache

# The numbers of a finished cell that must come back exactly, named by their place in the stored JSON.
COMPARED: dict[str, Callable[[CellNumbers], Any]] = {
    "splits": lambda n: n.splits,
    "baseline.test.ids": lambda n: n.baseline_test.ids,
    "baseline.test.scores": lambda n: n.baseline_test.scores,
    "optimized.test.ids": lambda n: n.optimized_test.ids,
    "optimized.test.scores": lambda n: n.optimized_test.scores,
    "lift.mean": lambda n: n.lift.mean,
    "lift.ci": lambda n: n.lift.ci,
    "validation.baseline": lambda n: n.baseline_val,
    "validation.optimized": lambda n: n.optimized_val,
    "budget.metric_calls": lambda n: n.spending.metric_calls,
    "budget.lm_calls": lambda n: n.spending.lm_calls,
    "learning_curve": lambda n: n.learning_curve,
    "components": lambda n: n.components,
    "optimizer.candidates": lambda n: n.optimizer.candidates,
}


@dataclass
class Reproduction:
    """The outcome of rerunning one stored cell."""

    key: str
    differences: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # field -> (stored, rerun)
    identity_changes: list[str] = field(default_factory=list)
    error: str | None = None
    # LM calls of the rerun that its cache could not answer: they went to the live LM, whose replies
    # need not be the stored ones (a shared cache that lost entries, or a peer that calls uncached).
    live_lm_calls: int = 0

    @property
    def exact(self) -> bool:
        return self.error is None and not self.differences

    def describe(self) -> str:
        if self.error:
            return f"{self.key}: could not rerun: {self.error}"
        note = (
            f" (stored with another {', '.join(self.identity_changes)}: a difference is expected)"
            if self.identity_changes
            else ""
        )
        if self.live_lm_calls:
            note += f" ({self.live_lm_calls} LM calls were not in the cache and went to the live LM)"
        if self.exact:
            return f"{self.key}: reproduced exactly{note}"
        diffs = "; ".join(
            f"{name}: stored {_short(a)}, now {_short(b)}" for name, (a, b) in self.differences.items()
        )
        return f"{self.key}: DIFFERS in {diffs}{note}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "exact": self.exact,
            "differences": {name: list(pair) for name, pair in self.differences.items()},
            "identity_changes": list(self.identity_changes),
            "live_lm_calls": self.live_lm_calls,
            "error": self.error,
        }


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _as_stored(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples as lists), so a stored and a fresh value compare."""
    return json.loads(json.dumps(value, default=str))


def compare(stored: CellRecord, rerun: CellRecord) -> dict[str, tuple[Any, Any]]:
    """Field -> (stored, rerun) for every compared field that differs."""
    before, after = stored.finished(), rerun.finished()
    differences = {}
    for name, value in COMPARED.items():
        was, now = _as_stored(value(before)), _as_stored(value(after))
        if was != now:
            differences[name] = (was, now)
    return differences


def _spec_for(stored: CellRecord, base: dict[str, Any], out: Path) -> tuple[ExperimentSpec, Cell]:
    cfg = stored.config
    cell = Cell(cfg.task, cfg.program, cfg.optimizer, cfg.lm, cfg.seed)
    spec = ExperimentSpec(
        tasks=[cell.task],
        programs=[cell.program],
        optimizers=[cell.optimizer],
        lms=[cell.lm],
        seeds=[cell.seed],
        budget=cfg.budget or base.get("budget", 1),
        reflection_lm=cfg.reflection_lm or base.get("reflection_lm", "local"),
        proposer_lm=cfg.proposer_lm,
        sizes={cell.task: cfg.sizes},
        split_seed=cfg.split_seed,
        num_threads=base.get("num_threads", 4),
        max_tokens=cfg.max_tokens,
        out=str(out),
        data_dir=base.get("data_dir"),
        name=base.get("name", ""),
        optimizer_options={cell.optimizer: dict(cfg.optimizer_options)},
        lm_cache=cfg.lm_cache,
    )
    return spec, cell


def _live_calls(rerun: CellRecord, baseline: BaselineRecord | None) -> int:
    """How many LM calls of a rerun (its optimizer, its test evaluation and, when it computed one, its
    baseline) were not answered from the cache."""
    if rerun.numbers is None:
        return 0
    calls = rerun.numbers.spending.uncached_lm_calls or 0
    if rerun.config.optimizer != "baseline":
        calls += rerun.numbers.optimized_test.usage.uncached_calls
    if baseline is not None:
        calls += baseline.val.usage.uncached_calls + baseline.test.usage.uncached_calls
    return calls


def _replaying(lms: LMs, store: Store, cell: Cell, spec: ExperimentSpec, scratch: Path) -> LMs:
    """Under ``lm_cache="per_cell"`` a cell's replies live in its own cache files (its baseline's and
    its run's): the rerun answers from a merged copy of them, so the stored files stay as they were."""
    if spec.lm_cache != "per_cell":
        return lms
    replay = Cache(scratch / "replay-cache.sqlite")
    for path in (
        store.baselines_dir / f"{cell.baseline_key}.lm-cache.sqlite",
        store.run_dir(cell.key) / "lm-cache.sqlite",
    ):
        if path.exists():
            replay.merge_from(path)
    return lms.with_cache(replay.path)


def reproduce_cells(
    out: str | Path, keys: list[str] | None = None, *, lms: LMs | None = None, progress: bool = False
) -> list[Reproduction]:
    """Rerun the stored cells of ``out`` (all finished ones, or ``keys``) and compare their numbers."""
    store = Store(out)
    try:
        base = json.loads((Path(out) / "spec.json").read_text())
    except (OSError, ValueError):
        base = {}
    stored_cells = {c.key: c for c in store.cells() if c.ok}
    wanted = keys if keys is not None else sorted(stored_cells)
    missing = [k for k in wanted if k not in stored_cells]
    if missing:
        raise KeyError(
            f"No finished cell {missing[0]!r} in {store.cells_dir}; finished: {sorted(stored_cells)}"
        )
    lms = lms or LMs()
    outcomes = []
    for key in wanted:
        stored = stored_cells[key]
        outcome = Reproduction(key)
        with tempfile.TemporaryDirectory(prefix="promptopt-reproduce-") as scratch:
            try:
                spec, cell = _spec_for(stored, base, Path(scratch))
                spec.validate()
                # A copied cell's LM replies stayed with the run that made it.
                origin = Store(Path(out) / stored.copied_from) if stored.copied_from else store
                cell_lms = _replaying(lms, origin, cell, spec, Path(scratch))
                outcome.identity_changes = cell_identity(spec, cell, cell_lms).changed_parts(stored.identity)
                rerun = run_cell(spec, cell, Store(scratch), cell_lms, progress=progress)
                outcome.live_lm_calls = _live_calls(rerun, Store(scratch).load_baseline(cell.baseline_key))
            except Exception as exc:  # a cell that cannot be rebuilt is reported, the others still run
                outcome.error = f"{type(exc).__name__}: {exc}"
                outcomes.append(outcome)
                continue
        if not rerun.ok:
            outcome.error = f"the rerun failed: {rerun.error.describe() if rerun.error else rerun.status}"
        else:
            outcome.differences = compare(stored, rerun)
        outcomes.append(outcome)
    return outcomes
