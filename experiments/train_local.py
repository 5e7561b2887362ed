"""Prompt optimization, then weight training on its successful traces, scored on one held-out test split.

Steps (each is skipped when its output exists, so a rerun continues after an interruption):

1. optimize the task's seed program on train/val with the local model (promptopt BootstrapFewShot by
   default; ``--optimizer gepa`` or ``mipro`` for the others);
2. export the optimized program's passing traces on the training examples as a chat SFT set;
3. train a LoRA adapter on the 0.5B model with the local TRL backend (checkpoints resume);
4. score four systems on the same test examples, all through transformers on this CPU so that only the
   weights and the prompt differ: base + seed prompt, base + optimized prompt, fine-tuned + seed prompt,
   fine-tuned + optimized prompt.

Usage::

    python experiments/train_local.py --task iris --sizes 60,15,45
    # start from a finished LangProBe cell instead (its splits; more training rows from its train pool):
    python experiments/train_local.py --extra-train 80 --prompt seed \
        --from-run results/peers-local/runs/iris__predict__bootstrap_fewshot__local__s0

Writes ``results/train/<task>-<program>.json`` and ``.md`` (scores, paired bootstrap intervals, data
sizes, training time) and ``-curve.png`` (training loss).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import promptopt as po
from langprobe import get_task
from promptopt.bench.identity import experiment_provenance
from promptopt.evaluate import EvaluationResult, bootstrap_ci
from promptopt.io import write_json_atomic
from promptopt.optimizers import GEPA, BootstrapFewShot, MIPROv2
from promptopt.optimizers.result import OptimizationResult
from promptopt.train import LocalBackend, TrainingJob, export_sft
from promptopt.train.cli import cell_record, training_examples

ROOT = Path(__file__).resolve().parents[1]


def optimizer_for(name: str, metric, budget: int, threads: int):
    if name == "bootstrap_fewshot":
        # Few demos keep the prompts short: every training step and test call reads them on the CPU.
        return BootstrapFewShot(metric, max_bootstrapped_demos=4, max_labeled_demos=4, num_threads=threads)
    if name == "gepa":
        return GEPA(metric, max_metric_calls=budget, num_threads=threads, progress=True)
    if name == "mipro":
        return MIPROv2(metric, auto="light", num_threads=threads)
    raise SystemExit(f"--optimizer must be bootstrap_fewshot, gepa or mipro, not {name!r}")


def scored(path: Path, program, data, metric, lm) -> EvaluationResult:
    if path.exists():
        return EvaluationResult.from_json(path)
    res = po.evaluate(program, data, metric, lm=lm, num_threads=1)
    res.to_json(path)
    return res


def _top_predictions(res: EvaluationResult, n: int = 3) -> list[tuple[str, int]]:
    """The most frequent answers (the last output field): a model stuck on one label shows here."""
    from collections import Counter

    answers = Counter(
        "(error)" if r.prediction is None else str(list(r.prediction.to_dict().values())[-1])[:40]
        for r in res.results
    )
    return answers.most_common(n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", default="iris")
    ap.add_argument("--program", default=None)
    ap.add_argument("--sizes", default="60,15,45", help="train,val,test")
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--optimizer", default="bootstrap_fewshot")
    ap.add_argument("--budget", type=int, default=60, help="metric calls (gepa)")
    ap.add_argument("--prompt", default="optimized", choices=["optimized", "seed"], help="SFT prompt")
    ap.add_argument("--epochs", type=float, default=3.0)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--from-run", help="a LangProBe cell's run folder: use its result and splits")
    ap.add_argument("--extra-train", type=int, default=0, help="more training rows from the train pool")
    args = ap.parse_args()

    cell_cfg = None
    if args.from_run:
        record = cell_record(Path(args.from_run))
        if record is None:
            raise SystemExit(f"{args.from_run} is not a LangProBe cell run folder (no cells/<name>.json).")
        cell_cfg = record.config
        args.task, args.program, args.optimizer = cell_cfg.task, cell_cfg.program, cell_cfg.optimizer
        args.sizes, args.split_seed = ",".join(map(str, cell_cfg.sizes)), cell_cfg.split_seed
    task = get_task(args.task)
    program_name = args.program or next(iter(task.programs))
    sizes = tuple(int(x) for x in args.sizes.split(","))
    splits = task.splits(seed=args.split_seed, sizes=sizes)
    trainset = training_examples(
        task, sizes=sizes, split_seed=args.split_seed, data_dir=None, extra=args.extra_train
    )
    name = f"{args.task}-{program_name}"
    tag = f"{args.optimizer}-{args.prompt}" + ("-cell" if args.from_run else "")
    work = ROOT / "runs" / "train-exp" / name
    out = ROOT / "results" / "train" / f"{name}-{tag}.json"
    work.mkdir(parents=True, exist_ok=True)
    seed_program = task.programs[program_name]()
    server_lm = po.LM("local")

    # 1. optimize (or take a finished cell's result)
    t0 = time.time()
    if args.from_run:
        opt_file = Path(args.from_run) / "result.json"
        result = OptimizationResult.load(opt_file)
    else:
        opt_file = work / f"opt-{args.optimizer}" / "result.json"
        optimizer = optimizer_for(args.optimizer, task.metric, args.budget, args.threads)
        result = optimizer.compile(
            seed_program, splits.train, splits.val, lm=server_lm, run_dir=opt_file.parent, resume=True
        )
        result.save(opt_file)
    optimized = result.program_for(seed_program)
    print(result.summary())
    opt_seconds = time.time() - t0

    # 2. export
    data_dir = work / f"sft-{tag}"
    with po.context(lm=server_lm):
        data = export_sft(
            result,
            seed_program,
            trainset,
            task.metric,
            data_dir,
            prompt=args.prompt,
            val_fraction=0.1,
            num_threads=args.threads,
            source={"run": str(opt_file.parent), "task": args.task, "program": program_name},
        )
    print(f"SFT data: {data.n_train} train / {data.n_val} val rows ({data.manifest['counts']})")

    # 3. train
    backend = LocalBackend(work / "jobs")
    job = TrainingJob(
        kind="sft",
        data=str(data.path),
        base_model="local",
        epochs=args.epochs,
        learning_rate=args.lr,
        batch_size=args.batch_size,
        save_steps=5,
        max_length=2048,
    )
    job_id = backend.submit(job, f"sft-{tag}")
    for line in backend.logs(job_id, follow=True):
        if "'loss'" in line or "Error" in line:
            print(line)
    trained = backend.result(job_id)
    print(f"trained {trained.steps} steps in {trained.seconds:.0f}s, final loss {trained.final_loss}")

    # 4. score the four systems with one engine (transformers, float32, greedy)
    base_lm = po.LM("hf/local", max_tokens=256)
    tuned_lm = po.LM(trained.lm, max_tokens=256)
    systems = {
        "base+seed": (seed_program, base_lm),
        "base+optimized": (optimized, base_lm),
        "finetuned+seed": (seed_program, tuned_lm),
        "finetuned+optimized": (optimized, tuned_lm),
    }
    t_eval = time.time()
    scores = {}
    for label, (program, lm) in systems.items():
        path = work / f"test-{tag}-{label}.json"
        scores[label] = scored(path, program, splits.test, task.metric, lm)
        print(f"{label}: {100 * scores[label].score:.1f}")
    ref = scores["base+seed"].scores
    report = {
        "task": args.task,
        "program": program_name,
        "optimizer": args.optimizer,
        "sft_prompt": args.prompt,
        "model": "qwen2.5-coder-0.5b (GGUF dequantized to float32, transformers on CPU)",
        "split_seed": args.split_seed,
        "sizes": {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)},
        "training_examples": len(trainset),
        "from_run": args.from_run,
        "split_ids": splits.ids(),
        "optimization": {
            "val_seed": result.seed_score,
            "val_best": result.best_score,
            "budget": result.budget.to_dict(),
            "seconds_this_invocation": opt_seconds,
        },
        "data": {"train_rows": data.n_train, "val_rows": data.n_val, **data.manifest["counts"]},
        "training": {
            "job": job.to_dict(),
            "steps": trained.steps,
            "seconds": trained.seconds,
            "final_loss": trained.final_loss,
        },
        "test": {
            label: {
                "score": res.score,
                "errors": len(res.errors),
                "lift_vs_base_seed": res.score - scores["base+seed"].score,
                "lift_ci95": list(bootstrap_ci([b - a for a, b in zip(ref, res.scores, strict=True)])),
                "top_predictions": _top_predictions(res),
            }
            for label, res in scores.items()
        },
        "eval_seconds_this_invocation": time.time() - t_eval,
        "provenance": experiment_provenance(
            args.task,
            args.split_seed,
            sizes,
            {"optimizer_task": server_lm, "scoring_base": base_lm, "scoring_finetuned": tuned_lm},
        ),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, report)
    curve = work / "jobs" / job_id / "curve.png"
    if curve.exists():
        shutil.copy(curve, out.with_name(f"{name}-{tag}-curve.png"))
    lines = [
        f"# Prompt optimization + LoRA SFT on {args.task} ({program_name})",
        "",
        f"Optimizer: {args.optimizer}; SFT prompt: {args.prompt}; "
        f"{data.n_train} train / {data.n_val} val rows from {len(trainset)} training examples; "
        f"{trained.steps} steps in {trained.seconds / 60:.1f} min on the CPU.",
        "",
        f"| system | test ({len(splits.test)}) | lift vs base+seed [95% CI] | errors | top answers |",
        "| --- | --- | --- | --- | --- |",
    ]
    for label, row in report["test"].items():
        lo, hi = row["lift_ci95"]
        lines.append(
            f"| {label} | {100 * row['score']:.1f} | {100 * row['lift_vs_base_seed']:+.1f} "
            f"[{100 * lo:+.1f}, {100 * hi:+.1f}] | {row['errors']} | "
            + ", ".join(f"{k} ({v})" for k, v in row["top_predictions"])
            + " |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(json.dumps({k: v["score"] for k, v in report["test"].items()}))


if __name__ == "__main__":
    main()
