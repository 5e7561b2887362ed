"""Does the order of a demo set move the task model's answers? A probe on the holdout split.

The instruction probe (``instruction_sensitivity.py``) found that the 0.5B task model barely reads its
instruction and that demos are what move its answers. BootstrapFewShot's demo sets also lean on the
model's favourite answer: its bootstrapped demos are the training examples the model already got
right, which for a model that answers one label most of the time are mostly that label, and they
stand first. This script takes each task's BootstrapFewShot program from a bench folder and scores
it on the holdout split (``holdout.py``'s, outside the comparison's splits) with the same demos in
other orders:

* ``as_is``: the adopted order (bootstrapped demos first, labeled demos after);
* ``reversed``: the same demos last to first;
* ``interleaved``: round robin over the answer labels (the rarest label first), so no label
  dominates any stretch of the prompt and the last demos are of different labels.

Per task and order it stores the score, the per-example scores and the answer counts; each order's
mean difference from ``as_is`` comes with a paired bootstrap interval over the examples (scipy.stats).
The answers come through the holdout's LM cache, so a killed run resumes from what was answered.

    python experiments/gepa_dev/demo_order_probe.py results/comparison/r0.5b-b60 \
        --out results/gepa-dev/demo-order-probe.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from holdout import add_lm_options, examples_sha256, holdout_examples, one_cell_per_task  # noqa: E402

import promptopt as po  # noqa: E402
from langprobe import get_task  # noqa: E402
from langprobe.task import task_dir  # noqa: E402
from promptopt.lm.identity import lm_identity  # noqa: E402
from promptopt.optimizers.components import deserialize_components  # noqa: E402
from promptopt.provenance import collect, files_sha256  # noqa: E402

TASKS = ("iris", "heartdisease", "scone", "hover", "mmlu")


def interleaved(demos: Sequence[Any], label_of: Any) -> list[Any]:
    """Round robin over the demos' labels, rarest label first, each label's demos in their order."""
    by_label: dict[str, list[Any]] = defaultdict(list)
    for demo in demos:
        by_label[label_of(demo)].append(demo)
    labels = sorted(by_label, key=lambda lab: (len(by_label[lab]), lab))
    out: list[Any] = []
    while any(by_label.values()):
        for lab in labels:
            if by_label[lab]:
                out.append(by_label[lab].pop(0))
    return out


ORDERS = {
    "as_is": lambda demos, label_of: list(demos),
    "reversed": lambda demos, label_of: list(reversed(demos)),
    "interleaved": interleaved,
}


def paired_difference(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    diffs = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if np.ptp(diffs) > 0:
        ci = stats.bootstrap((diffs,), np.mean, confidence_level=0.95, n_resamples=9999, random_state=0)
        interval = [float(ci.confidence_interval.low), float(ci.confidence_interval.high)]
    else:
        interval = [float(diffs.mean())] * 2
    return {"mean_difference": float(diffs.mean()), "difference_ci95": interval}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder", help="bench folder holding the BootstrapFewShot cells")
    p.add_argument("--optimizer", default="bootstrap_fewshot")
    p.add_argument("--seed", type=int, default=0, help="which seed's cell to take per task")
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--size", type=int, default=100, help="holdout examples per task, at most")
    add_lm_options(p)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    lm = po.LM(args.lm, max_tokens=args.max_tokens, cache=args.cache)
    wanted = [t.strip() for t in args.tasks.split(",") if t.strip()]
    cells = one_cell_per_task(Path(args.folder), args.optimizer, args.seed, wanted)

    tasks: dict[str, Any] = {}
    data: dict[str, Any] = {}
    for name in wanted:
        task, cell = get_task(name), cells[name]
        examples = holdout_examples(task, (15, 15, 100), 0, args.size)
        components = deserialize_components(dict(cell.finished().components))
        program = task.program(cell.config.program).with_components(components)
        (pred_name, predictor), *rest = program.named_predictors()
        if rest:
            raise SystemExit(f"{name}: the probe expects a one-predictor program, not {len(rest) + 1}.")
        field = predictor.signature.outputs[-1].name
        demos = list(predictor.demos)

        def label_of(demo: Any, field: str = field) -> str:
            return str(demo.get(field))

        by_order: dict[str, Any] = {}
        for order, arrange in ORDERS.items():
            arranged = arrange(demos, label_of)
            variant = program.with_components({f"{pred_name}.demos": arranged})
            result = po.evaluate(variant, examples, task.metric, lm=lm, num_threads=2, display_progress=False)
            if result.unscored:
                raise SystemExit(
                    f"{name} {order}: {len(result.unscored)} examples unscored (an LM outage?); rerun."
                )
            answers = Counter(str((r.prediction or {}).get(field, "")).strip() for r in result.results)
            by_order[order] = {
                "demo_labels": [label_of(d) for d in arranged],
                "score": result.score,
                "scores": result.scores,
                "answers": dict(answers.most_common()),
            }
            print(f"{name} {order}: {100 * result.score:.1f} {dict(answers.most_common())}", flush=True)
        for order in ORDERS:
            if order != "as_is":
                by_order[order]["minus_as_is"] = paired_difference(
                    by_order[order]["scores"], by_order["as_is"]["scores"]
                )
        gold = Counter(str(e.get(field)) for e in examples)
        tasks[name] = {
            "cell": cell.key,
            "examples": len(examples),
            "gold": dict(gold.most_common()),
            **by_order,
        }
        data[name] = {
            "files_sha256": files_sha256(task_dir(name))["sha256"] if task_dir(name) else None,
            "holdout_sha256": examples_sha256(examples),
        }
    means = {o: float(np.mean([t[o]["score"] for t in tasks.values()])) for o in ORDERS}
    out = {
        "what": "holdout score of each task's BootstrapFewShot program with its demos in other orders",
        "folder": args.folder,
        "means": means,
        "tasks": tasks,
        "provenance": collect(lms={"task": lm_identity(lm)}, data=data).to_dict(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print("means: " + ", ".join(f"{o} {100 * m:.1f}" for o, m in means.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
