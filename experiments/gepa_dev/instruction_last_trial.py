"""BootstrapFewShot and GEPA with the instruction also after the final inputs, judged on the holdout.

``instruction_sensitivity.py`` found that the 0.5B task model follows an instruction at the top of
the system message (where promptopt's and DSPy's chat adapters put it) on some tasks and not on
others, and follows it more often when it stands right before the answer. This trial asks whether
that placement changes the race between instructions and demos: on the comparison's 15/15
train/validation split (split seed 0) it runs BootstrapFewShot and GEPA (the 0.5B model as task LM
and reflector, ``--budget`` metric calls) with every task-LM call formatted by
``InstructionLastAdapter``, then scores the seed program and both adopted programs on each task's
holdout split with the same adapter. The same cells with the default adapter are those of the
recorded comparison (``results/comparison/holdout.json``).

Each optimizer run keeps its state in ``--work/<cell>/run`` and its LM cache beside it, and its
adopted program in ``<cell>.json``: a killed trial resumes where it stopped.

    python experiments/gepa_dev/instruction_last_trial.py --seeds 0 \
        --out results/gepa-dev/instruction-last-trial.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from holdout import HOLDOUT_CACHE, examples_sha256, holdout_examples, paired  # noqa: E402
from instruction_sensitivity import TASKS, InstructionLastAdapter  # noqa: E402

import promptopt as po  # noqa: E402
from langprobe import get_task  # noqa: E402
from langprobe.task import task_dir  # noqa: E402
from promptopt.bench.optimizers import RunContext, run_optimizer  # noqa: E402
from promptopt.lm.identity import lm_identity  # noqa: E402
from promptopt.optimizers.components import deserialize_components, serialize_components  # noqa: E402
from promptopt.provenance import collect, files_sha256  # noqa: E402

OPTIMIZERS = ("bootstrap_fewshot", "gepa")


def optimize(task: Any, optimizer: str, seed: int, budget: int, work: Path) -> dict[str, Any]:
    """The adopted program's components (from ``work`` when this cell already ran)."""
    cell = work / f"{task.name}__{optimizer}__s{seed}"
    done = cell.with_suffix(".json")
    if done.exists():
        return json.loads(done.read_text())
    cell.mkdir(parents=True, exist_ok=True)
    splits = task.splits(seed=0, sizes=(15, 15, 1))
    task_lm = po.LM("local", max_tokens=256, cache=str(cell / "lm-cache.sqlite"))
    reflection = po.LM("local", temperature=0.7, max_tokens=700, cache=str(cell / "lm-cache.sqlite"))
    ctx = RunContext(
        program=task.program("predict"),
        metric=task.metric,
        trainset=splits.train,
        valset=splits.val,
        task_lm=task_lm,
        reflection_lm=reflection,
        proposer_lm=reflection,
        budget=budget,
        seed=seed,
        run_dir=cell / "run",
        num_threads=2,
        progress=False,
    )
    with po.context(adapter=InstructionLastAdapter()):
        result = run_optimizer(optimizer, ctx)
    record = {
        "components": serialize_components(result.best_program.components()),
        "validation": {"seed": result.seed_score, "best": result.best_score},
        "metric_calls": result.budget.metric_calls,
        "seconds": result.budget.seconds,
    }
    done.write_text(json.dumps(record, indent=2) + "\n")
    return record


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--seeds", default="0")
    p.add_argument("--budget", type=int, default=60)
    p.add_argument("--size", type=int, default=100, help="holdout examples per task, at most")
    p.add_argument("--work", default=str(Path.home() / ".cache" / "promptopt" / "instruction-last"))
    p.add_argument("--cache", default=str(HOLDOUT_CACHE))
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    work = Path(args.work) / f"b{args.budget}"
    holdout_lm = po.LM("local", max_tokens=256, cache=args.cache)

    cells: list[dict[str, Any]] = []
    groups: dict[str, dict[tuple, float]] = {"baseline": {}, **{o: {} for o in OPTIMIZERS}}
    data: dict[str, Any] = {}
    for name in (t.strip() for t in args.tasks.split(",") if t.strip()):
        task = get_task(name)
        holdout = holdout_examples(task, (15, 15, 100), 0, args.size)
        data[name] = {
            "files_sha256": files_sha256(task_dir(name))["sha256"] if task_dir(name) else None,
            "holdout_sha256": examples_sha256(holdout),
        }
        for seed in seeds:
            runs = {"baseline": {"components": serialize_components(task.program("predict").components())}}
            runs |= {o: optimize(task, o, seed, args.budget, work) for o in OPTIMIZERS}
            for optimizer, run in runs.items():
                program = task.program("predict").with_components(deserialize_components(run["components"]))
                with po.context(adapter=InstructionLastAdapter()):
                    scored = po.evaluate(
                        program, holdout, task.metric, lm=holdout_lm, num_threads=2, display_progress=False
                    )
                if scored.unscored:
                    raise SystemExit(f"{name}: {len(scored.unscored)} holdout examples unscored; rerun.")
                groups[optimizer][(name, seed)] = scored.score
                cells.append(
                    {"task": name, "seed": seed, "optimizer": optimizer, "holdout": scored.score, **run}
                )
                print(f"{name} s{seed} {optimizer}: holdout {100 * scored.score:.1f}", flush=True)
    means = {o: float(np.mean(list(g.values()))) for o, g in groups.items()}
    out = {
        "what": "holdout scores of BootstrapFewShot's and GEPA's programs made and run with the instruction "
        "repeated after the final inputs",
        "budget": args.budget,
        "seeds": seeds,
        "means": means,
        "differences": {
            "gepa - bootstrap_fewshot": paired(groups["gepa"], groups["bootstrap_fewshot"]),
            "bootstrap_fewshot - baseline": paired(groups["bootstrap_fewshot"], groups["baseline"]),
            "gepa - baseline": paired(groups["gepa"], groups["baseline"]),
        },
        "cells": cells,
        "provenance": collect(lms={"task": lm_identity(holdout_lm)}, data=data).to_dict(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({"means": means, "differences": out["differences"]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
