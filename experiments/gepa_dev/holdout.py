"""Judge optimizer changes on a HOLDOUT split that no recorded comparison draws from.

A change judged on validation scores is judged on the examples the optimizer chose on: at 150
metric calls GEPA raised validation 9 points over BootstrapFewShot and test by half a point. This
script scores the programs that bench cells adopted on examples of each task that lie outside the
comparison's train, validation and test splits (``--exclude-sizes``, by default the comparison's
15/15/100 at split seed 0), and outside the cell's own splits, so a change can be judged on data it
never saw without touching the comparison's test split.

    python experiments/gepa_dev/holdout.py results/comparison/r0.5b-b150 \
        results/gepa-dev/same-screen-r0.5b-b150 --optimizers gepa,bootstrap_fewshot \
        --out results/gepa-dev/holdout-r0.5b-b150.json

Each task's holdout is the same for every cell: the examples left after the excluded splits (the
training pool's remainder for tasks with an official test file, the shuffled remainder otherwise),
in a fixed seeded order, the first ``--size`` of them. The programs are scored with the embedded
local model at the comparison's settings (temperature 0, ``--max-tokens``), through one LM cache
(``--cache``): cells that adopted the same program get the same answers, and a killed run resumes
from what was cached. An example the LM could not answer (an outage) stops the run instead of being
scored. Each cell's holdout score is stored with the per-example scores; every pair of (folder,
optimizer) groups gets the mean paired difference over the cells they share (same task, program,
LM, seed), the later group minus the earlier (folders in the order given, optimizers by name within
a folder), a bootstrap interval over those cells and a sign test (scipy.stats); the same
differences between two optimizers are also pooled over the folders (one per cell they share in a
folder).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from collections import defaultdict
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import promptopt as po  # noqa: E402
from langprobe import get_task  # noqa: E402
from langprobe.task import Task, task_dir  # noqa: E402
from promptopt.bench.records import CellRecord  # noqa: E402
from promptopt.bench.store import Store  # noqa: E402
from promptopt.core.example import Example  # noqa: E402
from promptopt.lm.identity import lm_identity  # noqa: E402
from promptopt.optimizers.components import deserialize_components  # noqa: E402
from promptopt.provenance import collect, files_sha256  # noqa: E402

HOLDOUT_CACHE = Path.home() / ".cache" / "promptopt" / "holdout" / "lm-cache.sqlite"


def add_lm_options(parser: argparse.ArgumentParser) -> None:
    """The task LM options of every script judging on the holdout: the model, its reply limit, and
    the LM cache they share, so a program scored by two scripts gets the same answers in both."""
    parser.add_argument(
        "--lm", default="local", help="the task LM (local: the 0.5B model, local/large: the 1.5B)"
    )
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--cache", default=str(HOLDOUT_CACHE))


def one_cell_per_task(folder: Path, optimizer: str, seed: int, tasks: list[str]) -> dict[str, CellRecord]:
    """The finished cell of ``optimizer`` at ``seed`` for each of ``tasks`` in ``folder``."""
    cells = {c.config.task: c for c in cells_of(folder, {optimizer}) if c.config.seed == seed}
    missing = [t for t in tasks if t not in cells]
    if missing:
        raise SystemExit(f"{folder}: no finished {optimizer} cell at seed {seed} for {missing}.")
    return {t: cells[t] for t in tasks}


def holdout_examples(
    task: Task, exclude_sizes: tuple[int, int, int], split_seed: int, size: int
) -> list[Example]:
    """The first ``size`` examples, in a fixed seeded order, of those no split of that size draws."""
    splits = task.splits(seed=split_seed, sizes=exclude_sizes)
    used = {e.id for part in (splits.train, splits.val, splits.test) for e in part}
    pool = [e for e in task.load(None) if e.id not in used]
    pool.sort(key=lambda e: e.id)  # the order the rows were read in must not matter
    random.Random(f"{task.name}:holdout").shuffle(pool)
    return pool[:size]


def examples_sha256(examples: list[Example]) -> str:
    h = hashlib.sha256()
    for e in examples:
        h.update(json.dumps(e.to_dict(), sort_keys=True, default=str).encode())
    return h.hexdigest()


def cells_of(folder: Path, optimizers: set[str]) -> list[CellRecord]:
    store = Store(folder)
    if store.unreadable:
        raise SystemExit(f"{folder}: unreadable cells: {[str(e) for e in store.unreadable]}")
    return [c for c in store.cells() if c.ok and c.config.optimizer in optimizers]


def score_cell(
    cell: CellRecord, task: Task, holdout: list[Example], lm: Any, num_threads: int
) -> dict[str, Any]:
    numbers = cell.finished()
    own = {i for ids in numbers.splits.values() for i in ids}
    if own & {e.id for e in holdout}:
        raise SystemExit(
            f"{cell.key}: its own splits overlap the holdout; give --exclude-sizes covering its sizes "
            f"{list(cell.config.sizes)}."
        )
    program = task.program(cell.config.program).with_components(
        deserialize_components(dict(numbers.components))
    )
    result = po.evaluate(
        program, holdout, task.metric, lm=lm, num_threads=num_threads, display_progress=False
    )
    if result.unscored:
        raise SystemExit(
            f"{cell.key}: {len(result.unscored)} holdout examples could not be scored (an LM outage?); "
            "rerun: what was answered is cached."
        )
    return {
        "score": result.score,
        "scores": result.scores,
        "validation": numbers.optimized_val,
        "test": numbers.optimized_test.score,
        "uncached_calls": result.usage.uncached_calls,
    }


def paired(a: dict[tuple, float], b: dict[tuple, float]) -> dict[str, Any] | None:
    keys = sorted(set(a) & set(b))
    if not keys:
        return None
    diffs = np.array([a[k] - b[k] for k in keys])
    raised, lowered = int((diffs > 1e-12).sum()), int((diffs < -1e-12).sum())
    if len(diffs) > 1 and np.ptp(diffs) > 0:
        ci = stats.bootstrap((diffs,), np.mean, confidence_level=0.95, n_resamples=9999, random_state=0)
        interval = [float(ci.confidence_interval.low), float(ci.confidence_interval.high)]
    else:
        interval = [float(diffs.mean())] * 2
    return {
        "cells": len(keys),
        "mean_difference": float(diffs.mean()),
        "difference_ci95": interval,
        "higher": raised,
        "lower": lowered,
        "sign_p": float(stats.binomtest(raised, raised + lowered).pvalue) if raised + lowered else 1.0,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="+", help="bench folders whose cells' programs are scored")
    p.add_argument("--optimizers", default="gepa,bootstrap_fewshot", help="comma-separated optimizer names")
    p.add_argument("--tasks", default="", help="comma-separated tasks to score (default: every task)")
    p.add_argument("--exclude-sizes", default="15,15,100", help="train,val,test sizes the holdout avoids")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--size", type=int, default=100, help="holdout examples per task, at most")
    add_lm_options(p)
    p.add_argument("--num-threads", type=int, default=2)
    p.add_argument("--out", required=True, help="JSON file to write")
    args = p.parse_args(argv)
    exclude = tuple(int(x) for x in args.exclude_sizes.split(","))
    if len(exclude) != 3:
        raise SystemExit(f"--exclude-sizes takes train,val,test, not {args.exclude_sizes!r}.")
    optimizers = {o.strip() for o in args.optimizers.split(",") if o.strip()}
    tasks = {t.strip() for t in args.tasks.split(",") if t.strip()}
    Path(args.cache).parent.mkdir(parents=True, exist_ok=True)
    lm = po.LM(args.lm, max_tokens=args.max_tokens, cache=args.cache)

    holdouts: dict[str, list[Example]] = {}
    rows: list[dict[str, Any]] = []
    groups: dict[str, dict[tuple, float]] = defaultdict(dict)
    for folder in args.folders:
        for cell in sorted(cells_of(Path(folder), optimizers), key=lambda c: c.key):
            cfg = cell.config
            if tasks and cfg.task not in tasks:
                continue
            if cfg.task not in holdouts:
                holdouts[cfg.task] = holdout_examples(get_task(cfg.task), exclude, args.split_seed, args.size)
            scored = score_cell(cell, get_task(cfg.task), holdouts[cfg.task], lm, args.num_threads)
            ident = {"folder": folder, "key": cell.key, "task": cfg.task, "seed": cfg.seed}
            rows.append({**ident, "optimizer": cfg.optimizer, **scored})
            groups[f"{folder}:{cfg.optimizer}"][(cfg.task, cfg.program, cfg.lm, cfg.seed)] = scored["score"]
            print(
                f"{folder}/{cell.key}: holdout {100 * scored['score']:.1f} "
                f"({len(scored['scores'])} examples, {scored['uncached_calls']} new LM calls); "
                f"validation {100 * scored['validation']:.1f}, test {100 * scored['test']:.1f}",
                flush=True,
            )
    if not rows:
        raise SystemExit(f"No finished cell of {', '.join(sorted(optimizers))} in {args.folders}.")

    means = {}
    for name, by_cell in groups.items():
        by_task: dict[str, list[float]] = defaultdict(list)
        for (task, *_), score in by_cell.items():
            by_task[task].append(score)
        means[name] = {
            "cells": len(by_cell),
            "mean": float(np.mean(list(by_cell.values()))),
            "per_task": {t: float(np.mean(v)) for t, v in sorted(by_task.items())},
        }
    # Later minus earlier: a candidate folder named after its reference reads as candidate - reference.
    order = list(reversed(groups))
    differences = {
        f"{a} - {b}": result
        for a, b in combinations(order, 2)
        if (result := paired(groups[a], groups[b])) is not None
    }
    # The same pairs of optimizers within each folder, pooled over the folders (several
    # configurations of one comparison): one difference per cell the two share in its folder.
    by_optimizer: dict[str, dict[tuple, float]] = defaultdict(dict)
    for name, by_cell in groups.items():
        folder, optimizer = name.rsplit(":", 1)
        by_optimizer[optimizer].update({(folder, *key): score for key, score in by_cell.items()})
    pooled = {
        f"{a} - {b}": result
        for a, b in combinations(sorted(by_optimizer, reverse=True), 2)
        if (result := paired(by_optimizer[a], by_optimizer[b])) is not None
    }
    data = {
        task: {
            "files_sha256": files_sha256(task_dir(task))["sha256"] if task_dir(task) else None,
            "holdout_sha256": examples_sha256(examples),
            "holdout_ids": [e.id for e in examples],
        }
        for task, examples in sorted(holdouts.items())
    }
    out = {
        "what": "score of each cell's adopted program on a holdout split outside the comparison's splits",
        "folders": args.folders,
        "exclude_sizes": list(exclude),
        "split_seed": args.split_seed,
        "means": means,
        "differences": differences,
        "pooled_differences": pooled,
        "cells": rows,
        "provenance": collect(lms={"task": lm_identity(lm)}, data=data).to_dict(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    for name, m in means.items():
        tasks = ", ".join(f"{t} {100 * s:.1f}" for t, s in m["per_task"].items())
        print(f"{name}: holdout {100 * m['mean']:.1f} over {m['cells']} cells ({tasks})")
    for name, d in [*differences.items(), *(("pooled: " + k, v) for k, v in pooled.items())]:
        lo, hi = d["difference_ci95"]
        print(
            f"{name}: {100 * d['mean_difference']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] over {d['cells']} "
            f"cells (higher {d['higher']}, lower {d['lower']}, sign p {d['sign_p']:.3f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
