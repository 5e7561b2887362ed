"""``promptopt train sft|rl|status|logs``: from an optimization run folder to a trained adapter.

``--from-run`` takes a folder with ``result.json`` (a GEPA/MIPROv2/baseline run). When it is a
LangProBe cell's run folder (``<out>/runs/<cell>``), the task, program and splits come from the
cell record; otherwise give ``--task`` and ``--program`` (and ``--sizes`` / ``--split-seed`` as the
run used). Training examples are the run's train split plus ``--extra-train`` more from the task's
train pool, never a validation or test example.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

from promptopt.bench.records import CellRecord
from promptopt.bench.store import Store, UnreadableRecordError
from promptopt.core.example import Example
from promptopt.optimizers.result import OptimizationResult


def cell_record(run_dir: Path) -> CellRecord | None:
    """The LangProBe cell whose run folder is ``run_dir`` (``<out>/runs/<cell>``), ``None`` for another
    folder; exits with the reason when the cell's file is damaged."""
    try:
        return Store(run_dir.parent.parent).load_cell(run_dir.name)
    except UnreadableRecordError as exc:
        raise SystemExit(str(exc)) from exc


def training_examples(
    task: Any,
    *,
    sizes: list[int] | None,
    split_seed: int,
    data_dir: str | None,
    extra: int,
    seed: int = 0,
) -> list[Example]:
    """The run's train split, then ``extra`` more rows from the pool that holds no val/test example."""
    splits = task.splits(data_dir, seed=split_seed, sizes=sizes)
    held = {e.id for e in splits.val} | {e.id for e in splits.test}
    train_ids = {e.id for e in splits.train}
    pool = [e for e in task.load(data_dir) if e.id not in held and e.id not in train_ids]
    random.Random(seed).shuffle(pool)
    return list(splits.train) + pool[: max(0, extra)]


def cmd_train(args: argparse.Namespace) -> int:
    from promptopt.train import LocalBackend, TrainingJob, export_rl, export_sft

    backend = LocalBackend(args.root)
    if args.action == "status":
        print(json.dumps(backend.status(args.job).to_dict(), indent=2))
        return 0
    if args.action == "logs":
        for line in backend.logs(args.job, follow=args.follow):
            print(line)
        return 0
    if not args.from_run:
        raise SystemExit("train sft|rl needs --from-run RUN_DIR (a folder with result.json).")
    run_dir = Path(args.from_run)
    result_file = run_dir / "result.json"
    if not result_file.exists():
        raise SystemExit(f"{run_dir} has no result.json: point --from-run at a finished optimization run.")
    result = OptimizationResult.load(result_file)
    cell = cell_record(run_dir)
    cfg = None if cell is None else cell.config
    task_name = args.task or (cfg.task if cfg else None)
    if not task_name:
        raise SystemExit(f"{run_dir} is not a LangProBe cell: give --task NAME (and --program).")
    import promptopt as po
    from promptopt.tasks import get_task

    task = get_task(task_name)
    program_name = args.program or (cfg.program if cfg else None)
    program = task.program(program_name)
    if args.sizes:
        sizes = [int(x) for x in args.sizes.split(",")]
    else:
        sizes = list(cfg.sizes) if cfg and cfg.sizes else None
    split_seed = args.split_seed if args.split_seed is not None else (cfg.split_seed if cfg else 0)
    trainset = training_examples(
        task, sizes=sizes, split_seed=split_seed, data_dir=args.data_dir, extra=args.extra_train
    )
    lm = po.LM(args.lm or (cfg.lm if cfg else "local"), max_tokens=(cfg.max_tokens if cfg else None) or 512)
    source = {"run": str(run_dir), "task": task_name, "program": program_name}
    data_dir = Path(args.root) / (args.job or f"{args.action}-{run_dir.name}") / "data"
    with po.context(lm=lm):
        if args.action == "sft":
            data = export_sft(
                result,
                program,
                trainset,
                task.metric,
                data_dir,
                candidates=_candidates(args.candidates),
                threshold=args.threshold,
                prompt=args.prompt,
                source=source,
            )
        else:
            data = export_rl(
                result, program, trainset, task.metric, data_dir, prompt=args.prompt, source=source
            )
    print(f"exported {data.kind}: {data.n_train} train / {data.n_val} val rows -> {data.path}")
    job = TrainingJob(
        kind=args.action,
        data=str(data.path),
        base_model=args.base_model,
        metric=f"task:{task_name}" if args.action == "rl" else None,
        epochs=args.epochs,
        max_steps=args.max_steps,
        learning_rate=args.lr,
        batch_size=args.batch_size,
    )
    job_id = backend.submit(job, args.job or f"{args.action}-{run_dir.name}")
    print(f"job {job_id} in {backend.job_dir(job_id)}")
    if args.detach:
        return 0
    for line in backend.logs(job_id, follow=True):
        print(line, file=sys.stderr)
    trained = backend.result(job_id)
    print(json.dumps({k: v for k, v in trained.to_dict().items() if k != "history"}, indent=2))
    print(f"score it: promptopt evaluate --task {task_name} --lm {trained.lm}")
    return 0


def _candidates(spec: str) -> Any:
    if spec in ("best", "front"):
        return spec
    if spec.startswith("top"):
        return int(spec[3:])
    return [int(x) for x in spec.split(",")]


def add_subcommand(sub: Any) -> None:
    tr = sub.add_parser("train", help="export an optimization run's traces and train a LoRA adapter on them")
    tr.add_argument("action", choices=["sft", "rl", "status", "logs"])
    tr.add_argument("--from-run", help="a run folder with result.json")
    tr.add_argument("--task", help="LangProBe task (default: from the cell record)")
    tr.add_argument("--program", help="program name within the task")
    tr.add_argument("--sizes", help="train,val,test sizes the run used (default: from the cell record)")
    tr.add_argument("--split-seed", type=int, default=None)
    tr.add_argument("--data-dir", help="data mirror directory")
    tr.add_argument("--extra-train", type=int, default=0, help="more training rows from the train pool")
    tr.add_argument("--candidates", default="best", help="best, front, topK or ids like 0,3")
    tr.add_argument("--threshold", type=float, default=1.0, help="metric score a trace needs to be kept")
    tr.add_argument("--prompt", default="optimized", choices=["optimized", "seed"])
    tr.add_argument("--lm", help="LM that runs the candidates (default: the run's)")
    tr.add_argument("--base-model", default="local", help="local, local/<name> or a HF model folder")
    tr.add_argument("--epochs", type=float, default=2.0)
    tr.add_argument("--max-steps", type=int, default=-1)
    tr.add_argument("--lr", type=float, default=2e-4)
    tr.add_argument("--batch-size", type=int, default=4)
    tr.add_argument("--root", default="runs/train", help="folder for job folders")
    tr.add_argument("--job", help="job id (default: <action>-<run folder name>); an existing one resumes")
    tr.add_argument("--detach", action="store_true", help="return once the job is started")
    tr.add_argument("--follow", action="store_true", help="with logs: follow until the job ends")
    tr.set_defaults(func=cmd_train)
