"""GEPA or MIPROv2 end to end on the local model: optimize on train/val, then score seed and best on test.

Usage (resumable: rerun the same command after an interruption)::

    python experiments/optimize_local.py --task heartdisease --program predict --budget 300 --sizes 60,30,150
    python experiments/optimize_local.py --optimizer mipro --task iris --proposer-lm local/large

Writes ``results/<optimizer>/<task>-<program><tag>.json`` (test scores, lift with a paired bootstrap
interval, budget, learning curve, best components) and ``.png`` (lineage and learning curve). The run
state lives in ``runs/<optimizer>/<task>-<program><tag>/``; LM calls are cached, so a rerun of a
finished run costs nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import promptopt as po
from langprobe import get_task
from promptopt.bench.identity import experiment_provenance
from promptopt.evaluate import bootstrap_ci
from promptopt.io import write_json_atomic
from promptopt.optimizers import GEPA, MIPROv2
from promptopt.optimizers.plots import plot_result

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--optimizer", choices=("gepa", "mipro"), default="gepa")
    ap.add_argument("--task", required=True)
    ap.add_argument("--program", default=None)
    ap.add_argument("--budget", type=int, default=300, help="metric calls")
    ap.add_argument("--sizes", default=None, help="train,val,test sizes (default: the task's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lm", default="local")
    ap.add_argument("--reflection-lm", default="local")
    ap.add_argument("--proposer", default="auto", help="GEPA: auto, rewrite or rules")
    ap.add_argument("--proposer-lm", default=None, help="MIPROv2's proposer (default: the reflection LM)")
    ap.add_argument("--minibatch-size", type=int, default=None, help="GEPA: 3; MIPROv2: fitted")
    ap.add_argument("--no-demos", action="store_true", help="instructions only")
    ap.add_argument("--max-tokens", type=int, default=None, help="task LM (the harness uses 256)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tag", default="")
    args = ap.parse_args()

    task = get_task(args.task)
    program_name = args.program or next(iter(task.programs))
    sizes = tuple(int(x) for x in args.sizes.split(",")) if args.sizes else task.sizes
    splits = task.splits(seed=args.seed, sizes=sizes)
    name = f"{args.task}-{program_name}{args.tag}"
    run_dir = ROOT / "runs" / args.optimizer / name
    out = ROOT / "results" / args.optimizer / f"{name}.json"

    task_lm = po.LM(args.lm) if args.max_tokens is None else po.LM(args.lm, max_tokens=args.max_tokens)
    reflection_lm = po.LM(args.reflection_lm, temperature=0.7, max_tokens=700)
    seed_program = task.programs[program_name]()
    if args.optimizer == "gepa":
        optimizer = GEPA(
            task.metric,
            max_metric_calls=args.budget,
            reflection_lm=reflection_lm,
            proposer=args.proposer,
            evolve_demos=not args.no_demos,
            minibatch_size=args.minibatch_size or 3,
            num_threads=args.threads,
            seed=args.seed,
        )
    else:
        demos = 0 if args.no_demos else 4
        optimizer = MIPROv2(
            task.metric,
            max_metric_calls=args.budget,
            proposer_lm=po.LM(args.proposer_lm or args.reflection_lm, temperature=0.7, max_tokens=700),
            max_bootstrapped_demos=demos,
            max_labeled_demos=demos,
            minibatch_size=args.minibatch_size,
            num_threads=args.threads,
            seed=args.seed,
        )
    t0 = time.time()
    result = optimizer.compile(
        seed_program, splits.train, splits.val, lm=task_lm, run_dir=run_dir, resume=True
    )
    print(result.summary())

    t1 = time.time()
    seed_test = po.evaluate(seed_program, splits.test, task.metric, lm=task_lm, num_threads=args.threads)
    best_test = po.evaluate(
        result.best_program, splits.test, task.metric, lm=task_lm, num_threads=args.threads
    )
    diffs = [b - s for s, b in zip(seed_test.scores, best_test.scores, strict=True)]
    lo, hi = bootstrap_ci(diffs)
    report = {
        "task": args.task,
        "program": program_name,
        "optimizer": result.optimizer,
        "task_lm": args.lm,
        "reflection_lm": args.reflection_lm,
        "proposer_lm": args.proposer_lm or args.reflection_lm,
        "split_seed": args.seed,
        "sizes": {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)},
        "split_ids": splits.ids(),
        "budget": {"max_metric_calls": args.budget, **result.budget.to_dict()},
        "val": {"seed": result.seed_score, "best": result.best_score},
        "test": {
            "seed": seed_test.score,
            "best": best_test.score,
            "lift": best_test.score - seed_test.score,
            "lift_ci95": [lo, hi],
            "seed_errors": sum(r.error is not None for r in seed_test.results),
            "best_errors": sum(r.error is not None for r in best_test.results),
        },
        "candidates": len(result.candidates),
        "pareto_front": result.pareto_front,
        "best_id": result.best_id,
        "best_origin": result.best_candidate.origin,
        "best_components": result.best_candidate.components,
        "learning_curve": result.learning_curve,
        "stop_reason": result.stop_reason,
        "config": result.config,
        "wall_seconds": {"optimize_this_invocation": t1 - t0, "test_eval": time.time() - t1},
        "provenance": experiment_provenance(
            args.task,
            args.seed,
            tuple(sizes),
            {
                "task": args.lm,
                "reflection": args.reflection_lm,
                "proposer": args.proposer_lm or args.reflection_lm,
            },
        ),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, report)
    plot_result(
        result,
        out.with_suffix(".png"),
        title=f"{result.optimizer} on {name}: {result.summary().split(';')[0]}",
    )
    print(json.dumps(report["test"], indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
