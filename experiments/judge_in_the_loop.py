"""A task program optimized with an LM judge as its metric, on a task that also has a gold metric.

First, with ``--calibrate-budget N``, the rubric judge is calibrated: the seed program answers
``--label-examples`` questions from the training pool (none of them in the loop's splits), the gold
metric labels each answer pass or fail, and GEPA optimizes the judge's prompts (instructions and the
wording of each criterion) to agree with those labels, reporting held-out agreement before and
after. Then GEPA optimizes the task program against the (calibrated) judge, with no answer key; the
seed and the optimized program are scored on the test split by both the judge and the task's gold
metric. A judge score that rises while the gold score does not is reward hacking, and the report
shows both side by side with paired 95% intervals.

Usage (resumable: rerun the same command after an interruption; LM calls are cached)::

    python experiments/judge_in_the_loop.py --task gsm8k --program cot \\
        --rubric experiments/rubrics/gsm8k.toml --judge-lm local/large --reflection-lm local/large \\
        --calibrate-budget 60 --label-examples 60 --budget 60 --sizes 20,15,40

Writes ``results/verifiers/judge-in-the-loop-<task>-<program><tag>.json`` with provenance; the run
state lives in ``runs/judge-loop/<task>-<program><tag>/``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from promptopt.core.example import Example, Prediction
from promptopt.core.program import Program
from promptopt.evaluate import bootstrap_ci, evaluate
from promptopt.io import write_json_atomic
from promptopt.lm_protocol import LanguageModel
from promptopt.optimizers import GEPA
from promptopt.verifiers import (
    CalibrationReport,
    PassFailLabels,
    Rubric,
    RubricJudge,
    calibrate,
    load_rubric,
    pass_fail_agreement,
)

ROOT = Path(__file__).resolve().parents[1]


def rendered_inputs(example: Example) -> str:
    """The example's inputs as the judge reads them (any task: one ``name: value`` line each)."""
    return "\n".join(f"{k}: {v}" for k, v in example.inputs().items())


def rendered_outputs(prediction: Prediction) -> str:
    return "\n".join(f"{k}: {v}" for k, v in prediction.items())


def _paired(before: Sequence[float], after: Sequence[float]) -> dict[str, Any]:
    diffs = [a - b for b, a in zip(before, after, strict=True)]
    low, high = bootstrap_ci(diffs)
    return {"mean": sum(diffs) / len(diffs) if diffs else float("nan"), "ci95": [low, high]}


def _scores(
    program: Program, examples: Sequence[Example], metric: Any, lm: LanguageModel, threads: int
) -> Any:
    run = evaluate(program, examples, metric, lm=lm, num_threads=threads, display_progress=True)
    if run.unscored:
        first = run.unscored[0]
        raise RuntimeError(
            f"{len(run.unscored)} test examples could not be scored ({first.failure}: {first.error}); "
            "run the same command again once the LM answers."
        )
    return run


def labeled_outputs(
    program: Program, examples: Sequence[Example], gold_metric: Any, lm: LanguageModel, threads: int
) -> list[Example]:
    """``program``'s answers to ``examples`` as the judge reads them, each labeled pass (the gold
    metric's full score) or fail; an example the program could not answer is left out."""
    run = evaluate(program, examples, gold_metric, lm=lm, num_threads=threads, display_progress=True)
    return [
        Example(
            _id=r.example.id,
            task_input=rendered_inputs(r.example),
            output=rendered_outputs(r.prediction),
            label=r.score >= 1.0,
        ).with_inputs("task_input", "output")
        for r in run.results
        if r.error is None and r.prediction is not None
    ]


def calibrated_judge(
    judge: RubricJudge,
    labeled: Sequence[Example],
    *,
    judge_lm: LanguageModel,
    reflection_lm: LanguageModel,
    budget: int,
    sizes: tuple[int, int, int],
    run_dir: Path,
    seed: int = 0,
    threads: int = 2,
) -> CalibrationReport:
    """``judge`` optimized with GEPA to agree with the pass/fail labels of ``labeled``."""
    optimizer = GEPA(pass_fail_agreement(), max_metric_calls=budget, reflection_lm=reflection_lm, seed=seed)
    return calibrate(
        judge,
        labeled,
        optimizer=optimizer,
        labels=PassFailLabels(),
        sizes=sizes,
        seed=seed,
        lm=judge_lm,
        run_dir=run_dir,
        resume=True,
        num_threads=threads,
        progress=True,
    )


def run_experiment(
    *,
    seed_program: Program,
    train: Sequence[Example],
    val: Sequence[Example],
    test: Sequence[Example],
    gold_metric: Any,
    rubric: Rubric,
    task_lm: LanguageModel,
    judge_lm: LanguageModel,
    reflection_lm: LanguageModel,
    budget: int,
    run_dir: Path,
    seed: int = 0,
    threads: int = 2,
    calibration: tuple[Sequence[Example], int, tuple[int, int, int]] | None = None,
) -> dict[str, Any]:
    """Calibrate the judge (``calibration``: labeled outputs, budget, sizes), optimize the program
    against it, then score seed and optimized programs with judge and gold metric."""
    judge = RubricJudge(rubric, lm=judge_lm)
    calibrated: dict[str, Any] = {"calibrated": False}
    if calibration is not None:
        labeled, calibration_budget, calibration_sizes = calibration
        report = calibrated_judge(
            judge,
            labeled,
            judge_lm=judge_lm,
            reflection_lm=reflection_lm,
            budget=calibration_budget,
            sizes=calibration_sizes,
            run_dir=run_dir / "calibration",
            seed=seed,
            threads=threads,
        )
        judge = report.judge  # type: ignore[assignment]
        labels = [ex["label"] for ex in labeled]
        calibrated = {
            "calibrated": True,
            "labeled_outputs": {"n": len(labels), "pass": sum(labels)},
            **report.to_dict(),
        }
    judge_metric = judge.metric(task_input=rendered_inputs, output=rendered_outputs)
    t0 = time.time()
    result = GEPA(judge_metric, max_metric_calls=budget, reflection_lm=reflection_lm, seed=seed).compile(
        seed_program, train, val, lm=task_lm, run_dir=run_dir / "program", resume=True
    )
    optimize_seconds = time.time() - t0
    best = result.best_program
    assert best is not None
    test_scores: dict[str, dict[str, Any]] = {}
    for metric_name, metric in (("judge", judge_metric), ("gold", gold_metric)):
        before = _scores(seed_program, test, metric, task_lm, threads)
        after = _scores(best, test, metric, task_lm, threads)
        test_scores[metric_name] = {
            "seed": before.score,
            "optimized": after.score,
            "lift": _paired([r.score for r in before.results], [r.score for r in after.results]),
        }
    return {
        "rubric": rubric.to_dict(),
        "judge": calibrated,
        "sizes": {"train": len(train), "val": len(val), "test": len(test)},
        "test": test_scores,
        "validation_by_judge": {"seed": result.seed_score, "optimized": result.best_score},
        "budget": {"max_metric_calls": budget, **result.budget.to_dict()},
        "best_components": result.best_candidate.components,
        "stop_reason": result.stop_reason,
        "optimize_seconds_this_invocation": optimize_seconds,
        "reading": _reading(test_scores),
    }


def _reading(scores: Mapping[str, Mapping[str, Any]]) -> str:
    judge, gold = scores["judge"]["lift"], scores["gold"]["lift"]
    judge_up, gold_up = judge["ci95"][0] > 0, gold["ci95"][0] > 0
    if judge_up and not gold_up:
        return "the judge's score rose and the gold score did not: the program learned to please the judge"
    if judge_up and gold_up:
        return "both the judge's and the gold score rose"
    return "the judge's score did not rise clearly"


def main() -> None:
    import promptopt as po
    from langprobe import get_task
    from promptopt.bench.identity import experiment_provenance

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", default="gsm8k")
    ap.add_argument("--program", default=None)
    ap.add_argument("--rubric", default=str(ROOT / "experiments" / "rubrics" / "gsm8k.toml"))
    ap.add_argument("--lm", default="local", help="the task LM")
    ap.add_argument("--judge-lm", default="local/large")
    ap.add_argument("--reflection-lm", default="local/large")
    ap.add_argument("--budget", type=int, default=60, help="metric calls (judge verdicts)")
    ap.add_argument("--sizes", default="20,15,40")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tag", default="")
    ap.add_argument("--calibrate-budget", type=int, default=0, help="calibrate the judge first (0: no)")
    ap.add_argument("--label-examples", type=int, default=60, help="labeled outputs to calibrate on")
    ap.add_argument("--label-sizes", default="20,15,25", help="their train,val,held-out sizes")
    args = ap.parse_args()

    task = get_task(args.task)
    program_name = args.program or next(iter(task.programs))
    sizes = tuple(int(x) for x in args.sizes.split(","))
    splits = task.splits(seed=args.seed, sizes=sizes)
    name = f"{args.task}-{program_name}{args.tag}"
    lms = {
        "task": po.LM(args.lm, max_tokens=384),
        "judge": po.LM(args.judge_lm, max_tokens=256),
        "reflection": po.LM(args.reflection_lm, max_tokens=1024),
    }
    seed_program = task.program(program_name)
    calibration = None
    if args.calibrate_budget:
        from promptopt.train.cli import training_examples

        pool = training_examples(task, sizes=list(sizes), split_seed=args.seed, data_dir=None, extra=10**6)
        fresh = [e for e in pool if e.id not in {x.id for x in splits.train}][: args.label_examples]
        labeled = labeled_outputs(seed_program, fresh, task.metric, lms["task"], args.threads)
        label_sizes = tuple(int(x) for x in args.label_sizes.split(","))
        calibration = (labeled, args.calibrate_budget, label_sizes)
    report = run_experiment(
        seed_program=seed_program,
        train=splits.train,
        val=splits.val,
        test=splits.test,
        gold_metric=task.metric,
        rubric=load_rubric(args.rubric),
        task_lm=lms["task"],
        judge_lm=lms["judge"],
        reflection_lm=lms["reflection"],
        budget=args.budget,
        run_dir=ROOT / "runs" / "judge-loop" / name,
        seed=args.seed,
        threads=args.threads,
        calibration=calibration,  # type: ignore[arg-type]
    )
    report = {
        "task": args.task,
        "program": program_name,
        "split_ids": splits.ids(),
        **report,
        "provenance": experiment_provenance(args.task, args.seed, sizes, lms),
    }
    out = ROOT / "results" / "verifiers" / f"judge-in-the-loop-{name}.json"
    write_json_atomic(out, report)
    print(json.dumps(report["test"], indent=2))
    print(f"{report['reading']}\nwrote {out}")


if __name__ == "__main__":
    main()
