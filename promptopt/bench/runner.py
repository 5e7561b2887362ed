"""Run a LangProBe matrix cell by cell, storing each cell as soon as it finishes.

A cell evaluates the seed program (shared by the cell's optimizers, computed once), runs its
optimizer with a budget in metric calls inside its own run directory (``resume=True``, so an
interrupted cell continues), scores the optimized program on the same test examples and
records the paired lift. A cell that raises is stored with its error and the matrix goes on;
Ctrl-C stops the matrix and leaves every finished cell in place. Rerunning the same command
skips finished cells that are the same experiment (same config, data, LMs and code: see
:mod:`promptopt.bench.identity`), reruns those that are not, and retries failed ones.
"""

from __future__ import annotations

import functools
import json
import math
import os
import platform
import shutil
import sys
import threading
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from promptopt.bench.identity import CellIdentity, code_identity, data_identity
from promptopt.bench.lms import LMs
from promptopt.bench.optimizers import OptimizerUnavailableError, RunContext, availability, run_optimizer
from promptopt.bench.records import (
    BUSY,
    FAILED,
    OK,
    BaselineRecord,
    CellError,
    CellNumbers,
    CellRecord,
    CellSpending,
    OptimizerSummary,
    SplitScores,
)
from promptopt.bench.spec import Cell, ExperimentSpec
from promptopt.bench.stats import paired_bootstrap
from promptopt.bench.store import Store, UnreadableRecordError
from promptopt.evaluate import evaluate
from promptopt.lm.cache import Cache
from promptopt.lm.usage import track_usage
from promptopt.optimizers.components import serialize_components
from promptopt.provenance import Provenance, collect
from promptopt.tasks import get_task


class _CountingMetric:
    """The task metric, counting its calls (the budget unit) for optimizers that do not report it."""

    def __init__(self, metric: Callable[..., Any]) -> None:
        self.metric = metric
        self.calls = 0
        self._lock = threading.Lock()
        functools.update_wrapper(self, metric)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self.calls += 1
        return self.metric(*args, **kwargs)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class UnscoredExamplesError(RuntimeError):
    """An evaluation of a cell left examples without a score (the LM or the metric failed)."""


def _scores(result: Any, what: str = "evaluation") -> SplitScores:
    unscored = list(getattr(result, "unscored", []))
    if unscored:
        # A stored cell's per-example scores are its evidence: an outage must not enter them as 0.0.
        first = unscored[0]
        raise UnscoredExamplesError(
            f"{len(unscored)} of {len(result.results)} examples of the {what} could not be scored "
            f"({first.failure} failure on {first.example.id}: {first.error}); the cell is not stored "
            "as finished: run the same command again once the LM or metric works."
        )
    return SplitScores(
        score=result.score,
        ids=tuple(r.example.id for r in result.results),
        scores=tuple(r.score for r in result.results),
        errors=len(result.errors),
        usage=result.usage,
        seconds=result.seconds,
    )


def _finite(x: float | None) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


# --- one cell ---------------------------------------------------------------------------
def _splits(spec: ExperimentSpec, cell: Cell) -> Any:
    task = get_task(cell.task)
    cfg = spec.cell_config(cell)
    return task, task.splits(spec.data_dir, seed=cfg.split_seed, sizes=cfg.sizes)


def _data_identity(spec: ExperimentSpec, cell: Cell) -> dict[str, Any]:
    cfg = spec.cell_config(cell)
    return data_identity(cell.task, spec.data_dir, cfg.split_seed, cfg.sizes)


def cell_identity(spec: ExperimentSpec, cell: Cell, lms: LMs) -> CellIdentity:
    """Everything the cell's numbers depend on (see :mod:`promptopt.bench.identity`)."""
    return CellIdentity(
        config=spec.cell_config(cell).to_dict(),
        data=_data_identity(spec, cell),
        lms=lms.identities(cell, spec),
        code=code_identity(),
    )


def baseline_identity(spec: ExperimentSpec, cell: Cell, lms: LMs) -> CellIdentity:
    return CellIdentity(
        config=spec.cell_config(cell).baseline_part(),
        data=_data_identity(spec, cell),
        lms={"task": lms.identities(cell, spec)["task"]},
        code=code_identity(),
    )


def _provenance(identity: CellIdentity) -> Provenance:
    return collect(lms=identity.lms, data={identity.data["task"]: identity.data})


def ensure_baseline(
    spec: ExperimentSpec, cell: Cell, store: Store, lms: LMs, progress: bool
) -> BaselineRecord:
    """The seed program's val and test scores for the cell's (task, program, lm, seed), computed once."""
    key = cell.baseline_key
    identity = baseline_identity(spec, cell, lms)
    with store.lock(key):
        try:
            found = store.load_baseline(key)
        except UnreadableRecordError:
            found = None  # computed again; saving sets the damaged file aside
        if found is not None and not identity.changed_parts(found.identity):
            return found
        for folder in spec.reuse_from:  # the seed's scores are the same wherever they were stored
            try:
                other = Store(folder).load_baseline(key)
            except UnreadableRecordError:
                continue
            if other is not None and not identity.changed_parts(other.identity):
                # Its LM cache goes with it, so `bench reproduce` replays the seed's evaluation too.
                # (merged through SQLite: a plain file copy can miss what is still in its WAL file).
                cache = Store(folder).baselines_dir / f"{key}.lm-cache.sqlite"
                if cache.exists():
                    store.baselines_dir.mkdir(parents=True, exist_ok=True)
                    Cache(store.baselines_dir / cache.name).merge_from(cache)
                store.save_baseline(other)
                return other
        task, splits = _splits(spec, cell)
        lm = lms.for_cell(spec, store.baselines_dir / f"{key}.lm-cache.sqlite").task_lm(cell.lm, spec)
        if progress:
            print(
                f"  baseline {key}: {len(splits.val)} val + {len(splits.test)} test examples", file=sys.stderr
            )
        opts = {"lm": lm, "num_threads": spec.num_threads, "display_progress": False}
        val = evaluate(task.program(cell.program), splits.val, task.metric, **opts)
        test = evaluate(task.program(cell.program), splits.test, task.metric, **opts)
        record = BaselineRecord(
            key=key,
            config=identity.config,
            identity=identity.to_dict(),
            provenance=_provenance(identity),
            splits=splits.ids(),
            val=_scores(val, "seed program on validation"),
            test=_scores(test, "seed program on test"),
            finished_at=_now(),
        )
        store.save_baseline(record)
        return record


def why_rerun(stored: CellRecord, identity: CellIdentity) -> str | None:
    """Why a stored cell is not the same experiment as ``identity`` (``None``: it is)."""
    if not stored.ok:
        return "failed before"
    if stored.identity is None:
        return "stored without an identity (older code)"
    changed = identity.changed_parts(stored.identity)
    if not changed:
        return None
    if "config" in changed:
        had, want = stored.identity.get("config") or {}, identity.config
        keys = sorted(k for k in want if had.get(k) != want[k])
        changed[changed.index("config")] = f"config ({', '.join(keys)})"
    return "changed " + ", ".join(changed)


def same_cell_elsewhere(
    spec: ExperimentSpec, cell: Cell, identity: CellIdentity
) -> tuple[str, CellRecord] | None:
    """The first of ``spec.reuse_from``'s folders that holds ``cell`` as the same experiment, with
    that record; ``None`` when none does. Other folders are only read."""
    for folder in spec.reuse_from:
        try:
            found = Store(folder).load_cell(cell.key)
        except UnreadableRecordError:
            continue  # that folder's own runs set it aside; here it is simply not the same cell
        if found is not None and why_rerun(found, identity) is None:
            return folder, found
    return None


def run_cell(
    spec: ExperimentSpec,
    cell: Cell,
    store: Store,
    lms: LMs | None = None,
    *,
    progress: bool = True,
    reuse_finished: bool = True,
) -> CellRecord:
    """Run one cell and store it; returns the stored record (``status`` "ok" or "failed").

    The cell is claimed first: when another process is running it, nothing is run and the record
    returned has ``status`` :data:`BUSY`. With ``reuse_finished``, a cell that another run finished
    as the same experiment while this one waited is returned as stored (``reused`` set).
    """
    lms = lms or LMs()
    with store.claim(cell.key) as mine:
        if not mine:
            return CellRecord(key=cell.key, status=BUSY, config=spec.cell_config(cell))
        if reuse_finished:
            try:
                found = store.load_cell(cell.key)
            except UnreadableRecordError:
                found = None
            identity = cell_identity(spec, cell, lms)
            if found is not None and why_rerun(found, identity) is None:
                return found.as_reused()
            elsewhere = same_cell_elsewhere(spec, cell, identity)
            if elsewhere is not None:
                # Stored relative to this folder, so it still points there from another directory.
                origin = os.path.relpath(Path(elsewhere[0]).resolve(), Path(spec.out).resolve())
                copied = elsewhere[1].as_copied_from(Path(origin).as_posix())
                store.save_cell(copied)
                return copied.as_reused()
        return _run_and_store(spec, cell, store, lms, progress, resume=reuse_finished)


def _run_and_store(
    spec: ExperimentSpec, cell: Cell, store: Store, lms: LMs, progress: bool, *, resume: bool = True
) -> CellRecord:
    started, t0 = _now(), time.perf_counter()
    identity: CellIdentity | None = None
    numbers: CellNumbers | None = None
    error: CellError | None = None
    try:
        identity = cell_identity(spec, cell, lms)
        why = availability(cell.optimizer)
        if why is not None:
            raise OptimizerUnavailableError(why)
        _claim_run_dir(store.run_dir(cell.key), identity, resume=resume)
        numbers = _run(spec, cell, store, lms, progress)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        error = CellError(type(exc).__name__, str(exc), traceback.format_exc(limit=20))
    record = CellRecord(
        key=cell.key,
        status=FAILED if numbers is None else OK,
        config=spec.cell_config(cell),
        numbers=numbers,
        error=error,
        identity=None if identity is None else identity.to_dict(),
        provenance=None if identity is None else _provenance(identity),
        started_at=started,
        finished_at=_now(),
        host=platform.node(),
        seconds=time.perf_counter() - t0,
    )
    store.save_cell(record)
    return record


def _claim_run_dir(run_dir: Path, identity: CellIdentity, *, resume: bool = True) -> None:
    """Keep an interrupted run's state only when it belongs to the same experiment: resuming state
    written by other code, data or LMs would mix two experiments in one result. Without ``resume``
    (``--fresh``) the state is discarded whatever made it."""
    marker = run_dir / "identity.json"
    if run_dir.exists() and not resume:
        shutil.rmtree(run_dir)
    if run_dir.exists():
        try:
            stored = json.loads(marker.read_text())
        except (OSError, ValueError):
            stored = None
        if identity.changed_parts(stored):
            shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(identity.to_dict(), indent=2, default=str))


def _run(spec: ExperimentSpec, cell: Cell, store: Store, lms: LMs, progress: bool) -> CellNumbers:
    task, splits = _splits(spec, cell)
    base = ensure_baseline(spec, cell, store, lms, progress)
    if base.splits != splits.ids():
        raise RuntimeError(
            f"The stored baseline {cell.baseline_key} used other examples; delete it to recompute."
        )
    lms = lms.for_cell(spec, store.run_dir(cell.key) / "lm-cache.sqlite")
    task_lm = lms.task_lm(cell.lm, spec)
    metric = _CountingMetric(task.metric)
    # An optimizer gets only what its cell's identity covers (see OptimizerEntry.reads), so one
    # that read more would fail here instead of storing a cell that claims to depend on less.
    config = spec.cell_config(cell)
    helpers = spec.reads_helper_lms(cell)
    ctx = RunContext(
        program=task.program(cell.program),
        metric=metric,
        trainset=splits.train,
        valset=splits.val,
        task_lm=task_lm,
        reflection_lm=lms.reflection_lm(spec) if helpers else None,
        proposer_lm=lms.proposer_lm(spec) if helpers else None,
        budget=config.budget,
        seed=cell.seed,
        run_dir=store.run_dir(cell.key),
        num_threads=spec.num_threads,
        progress=progress,
        options=dict(spec.optimizer_options.get(cell.optimizer, {})),
    )
    t0 = time.perf_counter()
    with track_usage() as usage:
        result = run_optimizer(cell.optimizer, ctx)
    opt_seconds = time.perf_counter() - t0
    if "interrupted" in (result.stop_reason or ""):
        raise KeyboardInterrupt  # the optimizer stopped early on Ctrl-C: the cell is not finished
    program = result.best_program
    assert program is not None
    opts = {"lm": task_lm, "num_threads": spec.num_threads, "display_progress": False}
    if cell.optimizer == "baseline":
        test, val_score = base.test, base.val.score
    else:
        test = _scores(evaluate(program, splits.test, task.metric, **opts), "optimized program on test")
        val_score = result.best_score if result.candidates else float("nan")
        if not _finite(val_score):
            val_score = evaluate(program, splits.val, task.metric, **opts).score
    b = result.budget
    prompt_tokens = b.prompt_tokens or usage.prompt_tokens
    completion_tokens = b.completion_tokens or usage.completion_tokens
    spending = CellSpending(
        metric_calls=b.metric_calls or metric.calls,
        metric_calls_counted=metric.calls,
        lm_calls=b.lm_calls or usage.calls,
        uncached_lm_calls=b.uncached_lm_calls or usage.uncached_calls,
        proposer_lm_calls=b.proposer_lm_calls,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        tokens=prompt_tokens + completion_tokens,
        cost=b.cost or usage.cost,
        seconds=b.seconds or opt_seconds,
        seconds_this_process=opt_seconds,
        metric_calls_by_phase=dict(b.metric_calls_by_phase),
        seconds_by_phase=dict(b.seconds_by_phase),
    )
    return CellNumbers(
        splits=splits.ids(),
        baseline_test=base.test,
        baseline_val=base.val.score,
        optimized_test=test,
        optimized_val=val_score,
        lift=paired_bootstrap(base.test.scores, test.scores, seed=cell.seed),
        spending=spending,
        learning_curve=tuple((x, y) for x, y in result.learning_curve),
        components=serialize_components(program.components()),
        optimizer=OptimizerSummary(
            name=result.optimizer,
            stop_reason=result.stop_reason or "",
            config=result.config,
            candidates=len(result.candidates),
        ),
    )
