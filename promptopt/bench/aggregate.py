"""The numbers a report shows: one row per cell, rows aggregated over seeds, and the summary per
optimizer (mean lift, wins and losses, a sign test)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from promptopt.bench.optimizers import OPTIMIZERS, base_name
from promptopt.bench.records import CellNumbers, CellRecord
from promptopt.bench.stats import pair_by_id, pooled_paired, sign_counts, sign_test

CSV_COLUMNS = [
    "key",
    "task",
    "program",
    "optimizer",
    "lm",
    "seed",
    "status",
    "n_test",
    "baseline_test",
    "optimized_test",
    "lift",
    "lift_ci_low",
    "lift_ci_high",
    "n_distinct",
    "wins",
    "losses",
    "ties",
    "sign_p",
    "baseline_val",
    "optimized_val",
    "metric_calls",
    "lm_calls",
    "tokens",
    "optimizer_seconds",
    "cell_seconds",
    "stop_reason",
    "error",
]


def optimizer_order(name: str) -> tuple[int, str]:
    """Where optimizer ``name`` is listed: in the registry's order (a variant after its optimizer),
    unknown ones last."""
    names, base = list(OPTIMIZERS), base_name(name)
    return (names.index(base) if base in names else len(names), name)


def cell_row(c: CellRecord) -> dict[str, Any]:
    """The cell's row of ``report.csv`` (:data:`CSV_COLUMNS`)."""
    cfg = c.config
    row: dict[str, Any] = {
        "task": cfg.task,
        "program": cfg.program,
        "optimizer": cfg.optimizer,
        "lm": cfg.lm,
        "seed": cfg.seed,
        "key": c.key,
        "status": c.status,
        "cell_seconds": c.seconds,
    }
    if c.numbers is not None:
        n = c.numbers
        ids, base, opt = paired_test_scores(c)
        wins, losses, ties = sign_counts(np.subtract(opt, base))
        row.update(
            n_test=n.lift.n,
            baseline_test=n.baseline_test.score,
            optimized_test=n.optimized_test.score,
            lift=n.lift.mean,
            lift_ci_low=n.lift.ci[0],
            lift_ci_high=n.lift.ci[1],
            n_distinct=len(ids),
            wins=wins,
            losses=losses,
            ties=ties,
            sign_p=sign_test(wins, losses),
            baseline_val=n.baseline_val,
            optimized_val=n.optimized_val,
            metric_calls=n.spending.metric_calls,
            lm_calls=n.spending.lm_calls,
            tokens=n.spending.tokens,
            optimizer_seconds=n.spending.seconds,
            stop_reason=n.optimizer.stop_reason,
            error="",
        )
    else:
        row["error"] = c.error.describe() if c.error else ""
    return {k: row.get(k) for k in CSV_COLUMNS}


def _group_key(c: CellRecord) -> tuple[str, str, str, str]:
    return (c.config.task, c.config.program, c.config.optimizer, c.config.lm)


def paired_test_scores(c: CellRecord) -> tuple[list[Any], list[float], list[float]]:
    """A finished cell's test ``(ids, baseline scores, optimized scores)``, paired by example id."""
    n = c.finished()
    base, opt = n.baseline_test, n.optimized_test
    return pair_by_id(base.ids, base.scores, opt.ids, opt.scores, label=f"cell {c.key}")


def mean_phases(splits: Sequence[dict[str, float]]) -> dict[str, float]:
    """The mean of each phase (metric calls or seconds) over the runs that said where theirs went
    (a phase such a run lacks counts 0); empty when none did."""
    told = [split for split in splits if split]
    phases = sorted({p for split in told for p in split})
    return {p: float(np.mean([split.get(p, 0) for split in told])) for p in phases}


def aggregate(cells: Sequence[CellRecord]) -> list[dict[str, Any]]:
    """One row per (task, program, optimizer, lm): means over seeds, and the lift pooled over seeds with
    :func:`~promptopt.bench.stats.pooled_paired`: its CI resamples distinct test examples (an example
    scored under several seeds is one cluster), its sign test counts distinct examples. ``n_test`` is
    the number of scored pairs over all seeds, ``n_distinct`` the number of distinct examples."""
    groups: dict[tuple[str, str, str, str], list[CellRecord]] = defaultdict(list)
    for c in cells:
        if c.ok:
            groups[_group_key(c)].append(c)
    rows = []
    for (task, program, optimizer, lm), cs in groups.items():
        cs = sorted(cs, key=lambda c: (c.config.seed, c.key))
        paired = [paired_test_scores(c) for c in cs]
        lift = pooled_paired([p[0] for p in paired], [p[1] for p in paired], [p[2] for p in paired])
        numbers = [c.finished() for c in cs]

        def mean(value: Any, numbers: list[CellNumbers] = numbers) -> float:
            return float(np.mean([value(n) for n in numbers]))

        rows.append(
            {
                "task": task,
                "program": program,
                "optimizer": optimizer,
                "lm": lm,
                "seeds": len(cs),
                "n_test": lift.n,
                "n_distinct": lift.n_distinct,
                "baseline_test": mean(lambda n: n.baseline_test.score),
                "optimized_test": mean(lambda n: n.optimized_test.score),
                "lift": lift.mean,
                "lift_ci": list(lift.ci),
                # Each seed's own lift, in seed order: the spread a user's single run may land in.
                "seed_lifts": [n.lift.mean for n in numbers],
                "wins": lift.wins,
                "losses": lift.losses,
                "ties": lift.ties,
                "sign_p": lift.sign_p,
                "baseline_val": mean(lambda n: n.baseline_val),
                "optimized_val": mean(lambda n: n.optimized_val),
                "metric_calls": mean(lambda n: n.spending.metric_calls),
                "lm_calls": mean(lambda n: n.spending.lm_calls),
                "tokens": mean(lambda n: n.spending.tokens),
                "seconds": mean(lambda n: n.spending.seconds),
                "metric_calls_by_phase": mean_phases([n.spending.metric_calls_by_phase for n in numbers]),
                "seconds_by_phase": mean_phases([n.spending.seconds_by_phase for n in numbers]),
            }
        )
    rows.sort(key=lambda r: (r["task"], r["program"], r["lm"], optimizer_order(r["optimizer"])))
    return rows


def by_optimizer(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per optimizer: the mean over tasks of each task's mean (over programs and LMs)."""
    per: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        per[r["optimizer"]][r["task"]].append(r)
    out = []
    for opt in sorted(per, key=optimizer_order):
        tasks = per[opt]

        def mean_over_tasks(col: str, tasks: dict[str, list[dict[str, Any]]] = tasks) -> float:
            return float(np.mean([np.mean([r[col] for r in rs]) for rs in tasks.values()]))

        out.append(
            {
                "optimizer": opt,
                "tasks": len(tasks),
                "baseline_test": mean_over_tasks("baseline_test"),
                "optimized_test": mean_over_tasks("optimized_test"),
                "lift": mean_over_tasks("lift"),
                "baseline_val": mean_over_tasks("baseline_val"),
                "optimized_val": mean_over_tasks("optimized_val"),
                "metric_calls": mean_over_tasks("metric_calls"),
                "seconds": mean_over_tasks("seconds"),
                "metric_calls_by_phase": mean_phases(
                    [mean_phases([r["metric_calls_by_phase"] for r in rs]) for rs in tasks.values()]
                ),
                "seconds_by_phase": mean_phases(
                    [mean_phases([r["seconds_by_phase"] for r in rs]) for rs in tasks.values()]
                ),
            }
        )
    return out


# --- text ---------------------------------------------------------------------------------
