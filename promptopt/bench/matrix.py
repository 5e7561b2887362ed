"""Run a LangProBe matrix: plan which cells to run (a stored cell is reused only when it is the same
experiment), hand them to an executor and report each as it finishes."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from promptopt.bench.executors import LocalExecutor
from promptopt.bench.lms import LMs
from promptopt.bench.optimizers import availability
from promptopt.bench.records import BUSY, CellRecord
from promptopt.bench.runner import cell_identity, same_cell_elsewhere, why_rerun
from promptopt.bench.spec import Cell, ExperimentSpec
from promptopt.bench.store import Store, UnreadableRecordError


@dataclass
class MatrixOutcome:
    ran: list[CellRecord] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    rerun_reasons: dict[str, str] = field(default_factory=dict)
    busy: list[str] = field(default_factory=list)  # cells another run on the same folder was running

    @property
    def failed(self) -> list[CellRecord]:
        return [r for r in self.ran if not r.ok]


@dataclass
class Plan:
    """What a run of the matrix will do with each cell."""

    todo: list[Cell]
    reused: list[str]  # keys of stored cells that are the same experiment
    reasons: dict[str, str]  # key -> why a stored cell is run again
    copies: dict[str, str] = field(default_factory=dict)  # key -> the reuse_from folder holding it

    def summary(self) -> str:
        rerun = Counter(why for key, why in self.reasons.items() if key not in self.copies)
        new = sum(1 for c in self.todo if c.key not in self.reasons and c.key not in self.copies)
        text = f"{len(self.reused)} reused (same config, data, LMs and code), {new} new"
        if rerun:
            whys = "; ".join(f"{n} {why}" for why, n in sorted(rerun.items()))
            text += f", {rerun.total()} rerun: {whys}"
        if self.copies:
            folders = ", ".join(f"{n} from {f}" for f, n in sorted(Counter(self.copies.values()).items()))
            text += f", {len(self.copies)} copied as the same experiment ({folders})"
        return text


def plan(spec: ExperimentSpec, store: Store, lms: LMs | None = None, *, fresh: bool = False) -> Plan:
    """Which cells to run: those not stored, failed, or stored with another identity (all of them
    with ``fresh``)."""
    lms = lms or LMs()
    todo, reused, reasons, copies = [], [], {}, {}
    for cell in spec.cells():
        try:
            found = store.load_cell(cell.key)
        except UnreadableRecordError as exc:
            found, reasons[cell.key] = None, f"unreadable ({exc.reason})"
        # Hashing data and sources costs time: only when there is a stored cell to compare it with.
        identity = cell_identity(spec, cell, lms) if found is not None or spec.reuse_from else None
        if found is not None and identity is not None:
            why = "--fresh" if fresh else why_rerun(found, identity)
            if why is None:
                reused.append(cell.key)
                continue
            reasons[cell.key] = why
        todo.append(cell)
        elsewhere = None if fresh or identity is None else same_cell_elsewhere(spec, cell, identity)
        if elsewhere is not None:
            copies[cell.key] = elsewhere[0]  # run_cell copies it
    return Plan(todo=todo, reused=reused, reasons=reasons, copies=copies)


def describe(record: CellRecord) -> str:
    if record.status == BUSY:
        return "in progress in another run on this folder; skipped here (run again later to include it)"
    if record.reused and record.copied_from:
        return f"the same experiment as stored in {record.copied_from} (relative to this folder); copied"
    if record.reused:
        return "finished by another run on this folder meanwhile; reused"
    if record.numbers is None:
        error = record.error.describe() if record.error else "no error recorded"
        return f"FAILED {error[:250]}"
    numbers = record.numbers
    base, opt = numbers.baseline_test.score, numbers.optimized_test.score
    lift, spent = numbers.lift, numbers.spending
    lo, hi = lift.ci
    return (
        f"test {100 * base:.1f}% -> {100 * opt:.1f}% (lift {100 * lift.mean:+.1f}, "
        f"95% CI {100 * lo:+.1f}..{100 * hi:+.1f}); {spent.metric_calls} metric calls, "
        f"{spent.lm_calls} LM calls, {record.seconds or 0:.0f}s"
    )


def run_matrix(
    spec: ExperimentSpec,
    *,
    executor: Any = None,
    lms: LMs | None = None,
    progress: bool = True,
    on_cell: Callable[[CellRecord], None] | None = None,
    fresh: bool = False,
) -> MatrixOutcome:
    """Run every cell of ``spec`` that is not stored as the same experiment (every cell with
    ``fresh``); ``on_cell`` sees each stored record."""
    spec.validate()
    store = Store(spec.out)
    todo_plan = plan(spec, store, lms, fresh=fresh)
    todo, done = todo_plan.todo, todo_plan.reused
    store.save_spec(spec.to_dict())
    executor = executor or LocalExecutor()
    outcome = MatrixOutcome(skipped=done, rerun_reasons=todo_plan.reasons)
    total = len(todo) + len(done)
    if progress:
        print(
            f"LangProBe {spec.name or 'experiment'}: {total} cells -> {spec.out}\n"
            f"  cells: {todo_plan.summary()}",
            file=sys.stderr,
        )
        for name in spec.optimizers:
            why = availability(name)
            if why:
                print(f"  {name}: {why}", file=sys.stderr)
    records = executor.run(spec, todo, lms=lms, progress=progress, reuse_finished=not fresh)
    for i, record in enumerate(records, start=1):
        if record.status == BUSY:
            outcome.busy.append(record.key)
        elif record.reused:
            outcome.skipped.append(record.key)
        else:
            outcome.ran.append(record)
        if progress:
            print(f"[{len(done) + i}/{total}] {record.key}: {describe(record)}", file=sys.stderr)
        if on_cell is not None:
            on_cell(record)
    return outcome
