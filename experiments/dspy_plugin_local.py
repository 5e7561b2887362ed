"""promptopt's optimizers on a native DSPy program, run by DSPy on the local model, scored on held-out data.

A DSPy program over a class-based DSPy signature (iris: a ``dspy.Predict`` from four measurements to
the species; gsm8k: a ``dspy.ChainOfThought`` from question to numeric answer) is compiled by
``promptopt.dspy.GEPA`` and ``promptopt.dspy.MIPROv2`` (optionally also by ``dspy.GEPA`` and
``dspy.MIPROv2``) on the LangProBe split used by ``experiments/peers_local.toml`` (15 train,
15 validation, 40 test, split seed 0) with the same metric-call budget, and every returned module is
scored on the test split with ``dspy.Evaluate``. Usage (resumable: promptopt runs keep their state in
``runs/dspy-plugin/<task>/``, DSPy caches its LM calls)::

    python experiments/dspy_plugin_local.py --optimizers gepa,mipro --budget 60
    python experiments/dspy_plugin_local.py --task heartdisease --task-lm local/large \
        --reflection-lm local/large --tag=-t1.5b

Writes ``results/dspy-plugin/<task>-<predict|cot>.json``: per optimizer the test accuracy with a paired
bootstrap interval of the lift over the uncompiled module, validation scores, metric calls and wall
time; optimizers already in the file are not rerun (``--fresh`` reruns them).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy

import promptopt as po
import promptopt.dspy as po_dspy
from langprobe import get_task
from langprobe.dspy_programs import HeartDiagnosis, IrisSpecies, MathWordProblem, scores_on
from promptopt.bench.identity import experiment_provenance
from promptopt.dspy.conversion import to_dspy_examples
from promptopt.dspy.lms import dspy_lm
from promptopt.evaluate import bootstrap_ci
from promptopt.io import write_json_atomic

ROOT = Path(__file__).resolve().parents[1]


# task -> (the DSPy program's name, a factory building it, its max_tokens)
PROGRAMS = {
    "iris": ("dspy.Predict(IrisSpecies)", lambda: dspy.Predict(IrisSpecies), 64),
    "heartdisease": ("dspy.Predict(HeartDiagnosis)", lambda: dspy.Predict(HeartDiagnosis), 64),
    "gsm8k": ("dspy.ChainOfThought(MathWordProblem)", lambda: dspy.ChainOfThought(MathWordProblem), 512),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", default="iris", choices=sorted(PROGRAMS))
    ap.add_argument("--optimizers", default="gepa,mipro", help="of gepa, mipro, dspy_gepa, dspy_mipro")
    ap.add_argument("--budget", type=int, default=60, help="metric calls")
    ap.add_argument("--sizes", default="15,15,40")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--task-lm", default="local", help="the LM DSPy runs the program on")
    ap.add_argument("--reflection-lm", default="local", help="GEPA's reflector and MIPROv2's proposer")
    ap.add_argument("--tag", default="", help="appended to the results file's name")
    ap.add_argument("--fresh", action="store_true", help="rerun optimizers already in the results file")
    args = ap.parse_args()

    task = get_task(args.task)
    program_name, make_program, max_tokens = PROGRAMS[args.task]
    sizes = tuple(int(x) for x in args.sizes.split(","))
    splits = task.splits(seed=args.seed, sizes=sizes)
    train, val, test = (to_dspy_examples(s) for s in (splits.train, splits.val, splits.test))
    kind = "cot" if "ChainOfThought" in program_name else "predict"
    out = ROOT / "results" / "dspy-plugin" / f"{args.task}-{kind}{args.tag}.json"
    report = json.loads(out.read_text()) if out.exists() else {}
    report.update(
        task=args.task,
        program=program_name,
        task_lm=args.task_lm,
        reflection_lm=f"{args.reflection_lm} (temperature 0.7)",
        split_seed=args.seed,
        sizes=dict(zip(("train", "val", "test"), sizes, strict=True)),
        split_ids=splits.ids(),
        budget=args.budget,
    )
    results = report.setdefault("optimizers", {})

    def accuracy(example, pred, trace=None):
        return task.metric(example, pred).value

    def accuracy_with_feedback(gold, pred, trace=None, pred_name=None, pred_trace=None):
        score = task.metric(gold, pred)
        return dspy.Prediction(score=score.value, feedback=score.feedback)

    task_lm = dspy_lm(po.LM(args.task_lm, max_tokens=max_tokens))
    reflection_lm = dspy_lm(po.LM(args.reflection_lm, temperature=0.7, max_tokens=700))
    dspy.configure(lm=task_lm)

    def test_scores(program: dspy.Module) -> list[float]:
        return scores_on(program, test, accuracy, num_threads=args.threads)

    seed = make_program()
    if "seed" not in report or args.fresh:
        report["seed"] = {
            "test_scores": test_scores(seed),
            "provenance": experiment_provenance(args.task, args.seed, sizes, {"task": args.task_lm}),
        }
        write_json_atomic(out, report)
    base = report["seed"]["test_scores"]

    run_root = ROOT / "runs" / "dspy-plugin" / f"{args.task}{args.tag}"
    n_trials = max(1, (args.budget - len(val)) // 5)  # minibatches of 5 after the seed's full evaluation
    builders = {
        "gepa": lambda: po_dspy.GEPA(
            accuracy_with_feedback,
            max_metric_calls=args.budget,
            reflection_lm=reflection_lm,
            num_threads=args.threads,
            seed=args.seed,
            run_dir=run_root / "gepa",
            resume=True,
            progress=False,
        ),
        "mipro": lambda: po_dspy.MIPROv2(
            accuracy,
            auto="light",
            max_metric_calls=args.budget,
            prompt_model=reflection_lm,
            num_threads=args.threads,
            seed=args.seed,
            run_dir=run_root / "mipro",
            resume=True,
            progress=False,
        ),
        "dspy_gepa": lambda: dspy.GEPA(
            metric=accuracy_with_feedback,
            max_metric_calls=args.budget,
            reflection_lm=reflection_lm,
            num_threads=args.threads,
            track_stats=True,
            seed=args.seed,
        ),
        "dspy_mipro": lambda: dspy.MIPROv2(
            metric=accuracy,
            prompt_model=reflection_lm,
            task_model=task_lm,
            auto=None,
            num_candidates=6,
            num_threads=args.threads,
            seed=args.seed,
            verbose=False,
        ),
    }
    for name in args.optimizers.split(","):
        if name not in builders:
            raise SystemExit(f"unknown optimizer {name!r}; choose from {sorted(builders)}")
        if name in results and not args.fresh:
            continue
        t0 = time.time()
        optimizer = builders[name]()
        if name == "dspy_mipro":
            compiled = optimizer.compile(
                seed, trainset=train, valset=val, num_trials=n_trials, minibatch_size=5
            )
        else:
            compiled = optimizer.compile(seed, trainset=train, valset=val)
        seconds = time.time() - t0
        scores = test_scores(compiled)
        lo, hi = bootstrap_ci([b - s for s, b in zip(base, scores, strict=True)])
        entry = {
            "test": sum(scores) / len(scores),
            "seed_test": sum(base) / len(base),
            "lift_ci95": [lo, hi],
            "test_scores": scores,
            "instruction": compiled.predictors()[0].signature.instructions,
            "demos": len(compiled.predictors()[0].demos),
            "optimize_seconds": seconds,
        }
        result = getattr(compiled, "promptopt_result", None)
        if result is not None:
            entry.update(
                val_seed=result.seed_score,
                val_best=result.best_score,
                metric_calls=result.budget.metric_calls,
                lm_calls=result.budget.lm_calls,
                stop_reason=result.stop_reason,
            )
        elif name == "dspy_gepa":
            d = compiled.detailed_results
            entry.update(val_best=d.val_aggregate_scores[d.best_idx], metric_calls=d.total_metric_calls)
        entry["provenance"] = experiment_provenance(
            args.task, args.seed, sizes, {"task": args.task_lm, "reflection": args.reflection_lm}
        )
        results[name] = entry
        write_json_atomic(out, report)
        print(f"{name}: test {entry['seed_test']:.3f} -> {entry['test']:.3f} [{lo:+.3f}, {hi:+.3f}]")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
