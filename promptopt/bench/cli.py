"""LangProBe matrices and their reports (also available as `promptopt bench ...`).

Examples:

    python -m promptopt.bench langprobe --preset quick
    python -m promptopt.bench langprobe --tasks iris,scone --programs predict,cot \\
        --optimizers baseline,gepa,mipro --lm local --reflection-lm local --budget 200 --seeds 0,1
    python -m promptopt.bench langprobe --config experiments/x.toml --workers 2
    python -m promptopt.bench report --out runs/langprobe/quick
    python -m promptopt.bench reproduce --out runs/langprobe/quick --cells iris__predict__gepa__local__s0
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from typing import Any

from promptopt.bench.optimizers import OPTIMIZERS
from promptopt.bench.spec import PRESETS, ExperimentSpec, SpecError, default_out, preset

# flag -> spec key, for flags that override a preset or a --config file when given.
_LIST_FLAGS = {"tasks": str, "programs": str, "optimizers": str, "lm": str, "seeds": int}


def _split(value: str, kind: type) -> list[Any]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    try:
        return [kind(v) for v in items]
    except ValueError:
        raise SpecError(f"Expected comma-separated integers, not {value!r}.") from None


def _parse_sizes(value: str) -> dict[str, tuple[int, ...]]:
    """``10,10,30`` for every task, or ``iris=10,10,30;scone=20,20,50``."""
    out: dict[str, tuple[int, ...]] = {}
    for part in value.split(";"):
        task, _, nums = part.rpartition("=")
        try:
            out[task.strip() or "default"] = tuple(int(n) for n in nums.split(","))
        except ValueError:
            raise SpecError(
                f"--sizes takes TRAIN,VAL,TEST (optionally TASK=...;...), not {value!r}."
            ) from None
    return out


def spec_from_args(args: argparse.Namespace) -> ExperimentSpec:
    data: dict[str, Any] = {}
    source = "the command line"
    if args.preset and args.config:
        raise SpecError("Give --preset or --config, not both.")
    if args.preset:
        data = preset(args.preset)
        source = f"preset {args.preset!r}"
    elif args.config:
        base = ExperimentSpec.from_toml(args.config)
        data = base.to_dict()
        source = args.config
    for flag, kind in _LIST_FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            data["lms" if flag == "lm" else flag] = _split(value, kind)
    for flag in ("budget", "num_threads", "max_tokens", "split_seed"):
        if getattr(args, flag) is not None:
            data[flag] = getattr(args, flag)
    for flag in ("reflection_lm", "proposer_lm", "out", "data_dir", "name"):
        if getattr(args, flag) is not None:
            data[flag] = getattr(args, flag)
    if args.sizes is not None:
        data["sizes"] = _parse_sizes(args.sizes)
    if args.task_app:
        apps = dict(data.get("task_apps") or {})
        for item in args.task_app:
            name, sep, url = item.partition("=")
            if not sep or not name or not url:
                raise SpecError(
                    f"--task-app {item!r}: write NAME=URL, e.g. --task-app iris-node=http://127.0.0.1:8123."
                )
            apps[name] = url
        data["task_apps"] = apps
        if args.tasks is None:
            data["tasks"] = [t for t in data.get("tasks", []) if t not in apps] + list(apps)
    if "tasks" not in data:
        raise SpecError("Give --tasks (e.g. --tasks iris,scone), --preset quick|full or --config FILE.toml.")
    if not data.get("out"):
        # A run's own folder, which git ignores: results/ holds committed evidence, not a cache.
        data["out"] = default_out(data.get("name"))
    if data.get("programs") == []:
        data["programs"] = None
    return ExperimentSpec.from_dict(data, source=source)


def cmd_langprobe(args: argparse.Namespace) -> int:
    from promptopt.bench.executors import ExecutorError, make_executor
    from promptopt.bench.matrix import run_matrix
    from promptopt.bench.report import build_report

    try:
        spec = spec_from_args(args)
        executor = make_executor(args.executor, workers=args.workers, address=args.ray_address)
    except (SpecError, ExecutorError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        from promptopt.bench.matrix import plan
        from promptopt.bench.optimizers import availability
        from promptopt.bench.store import Store

        todo_plan = plan(spec, Store(spec.out), fresh=args.fresh)
        for cell in spec.cells():
            if cell.key in todo_plan.reused:
                state = "reuse"
            elif cell.key in todo_plan.copies:
                state = f"copy from {todo_plan.copies[cell.key]} (the same experiment)"
            else:
                state = "to run" + (
                    f" ({todo_plan.reasons[cell.key]})" if cell.key in todo_plan.reasons else ""
                )
            why = availability(cell.optimizer)
            print(f"{cell.key}: {state}" + (f" [{why}]" if why else ""))
        print(
            f"{todo_plan.summary()}; sizes "
            + ", ".join(f"{t}={'/'.join(map(str, spec.sizes_for(t)))}" for t in spec.tasks)
        )
        return 0
    t0 = time.perf_counter()
    interrupted = False
    try:
        outcome = run_matrix(spec, executor=executor, progress=not args.quiet, fresh=args.fresh)
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        interrupted = True
        outcome = None
    files = build_report(spec.out)
    elapsed = time.perf_counter() - t0
    if interrupted:
        print(
            f"interrupted after {elapsed:.0f}s; finished cells are stored in {spec.out}/cells. "
            "Run the same command again to continue.",
            file=sys.stderr,
        )
        return 130
    assert outcome is not None
    reran = len(outcome.rerun_reasons)
    print(
        f"{len(outcome.ran)} cells run ({len(outcome.failed)} failed; {reran} of them stored before with "
        f"another identity or failed), {len(outcome.skipped)} reused as the same experiment, in "
        f"{elapsed:.0f}s.\nReport: {files.markdown} (page: {files.html})\n"
        f"Charts: {files.markdown.parent / 'charts'} "
        f"({len(files.charts)} files, summary: {files.markdown.parent / 'charts' / 'summary.png'})"
    )
    if outcome.busy:
        print(
            f"{len(outcome.busy)} cells were in progress in another run on {spec.out} and were skipped "
            "here; run the same command again once it is done to include them.",
            file=sys.stderr,
        )
    if outcome.failed:
        print(f"{len(outcome.failed)} cells failed; see {files.markdown} (Failed cells).", file=sys.stderr)
    return 1 if outcome.failed else 0


def cmd_report(args: argparse.Namespace) -> int:
    from promptopt.bench.report import build_report
    from promptopt.bench.store import Store

    store = Store(args.out)
    if not store.cells() and not store.unreadable:
        print(
            f"error: no cells in {args.out}/cells; run `python -m promptopt.bench langprobe` first.",
            file=sys.stderr,
        )
        return 2
    files = build_report(args.out)
    print(f"wrote {files.markdown}, {files.html}, {files.csv} and {len(files.charts)} charts")
    return 0


def _add_langprobe(sub: Any) -> None:
    p = sub.add_parser(
        "langprobe",
        help="run a LangProBe matrix (tasks x programs x optimizers x LMs x seeds)",
        description="Run a LangProBe matrix; finished cells are kept, so rerunning resumes.",
    )
    src = p.add_argument_group("what to run (flags override --preset/--config)")
    src.add_argument("--preset", choices=sorted(PRESETS), help="quick: minutes on the local model; full: all")
    src.add_argument("--config", metavar="FILE.toml", help="an experiment file (see promptopt.bench.spec)")
    src.add_argument("--tasks", help="comma-separated task names (see langprobe.TASKS)")
    src.add_argument(
        "--task-app",
        action="append",
        metavar="NAME=URL",
        help="a task app as a task named NAME (repeatable; its bearer token from $PROMPTOPT_TASK_APP_TOKEN)",
    )
    src.add_argument(
        "--programs", help="comma-separated program names, or 'all' (default: each task's first)"
    )
    src.add_argument(
        "--optimizers",
        help="comma-separated, from: "
        + ", ".join(OPTIMIZERS)
        + " (NAME@LABEL: a variant, options from the config)",
    )
    src.add_argument("--lm", help="task LM string(s), comma-separated (default: local)")
    src.add_argument("--reflection-lm", help="GEPA's reflection LM (default: local)")
    src.add_argument("--proposer-lm", help="MIPROv2's instruction proposer (default: the reflection LM)")
    src.add_argument("--seeds", help="comma-separated seeds (default: 0)")
    src.add_argument("--budget", type=int, help="metric calls per cell (default: 200)")
    src.add_argument("--sizes", help="train,val,test for every task, or TASK=train,val,test;...")
    src.add_argument("--split-seed", type=int, help="one data split for every seed (default: per seed)")
    src.add_argument("--max-tokens", type=int, help="task LM max tokens (default: 512)")
    src.add_argument("--num-threads", type=int, help="parallel examples per evaluation (default: 4)")
    src.add_argument("--data-dir", help="data mirror (default: $PROMPTOPT_DATA_DIR or shared/data)")
    src.add_argument("--out", help="output directory (default: runs/langprobe/<name>)")
    src.add_argument("--name", help="experiment name shown in the report")
    run = p.add_argument_group("how to run")
    run.add_argument("--executor", choices=["local", "ray"], default="local")
    run.add_argument("--workers", type=int, default=1, help="local executor: cells in parallel processes")
    run.add_argument("--ray-address", help="ray executor: cluster address (default: local Ray)")
    run.add_argument("--dry-run", action="store_true", help="list the cells and exit")
    run.add_argument(
        "--fresh", action="store_true", help="run every cell again, even those stored as the same experiment"
    )
    run.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_langprobe)


def cmd_reproduce(args: argparse.Namespace) -> int:
    from promptopt.bench.reproduce import reproduce_cells

    keys = _split(args.cells, str) if args.cells else None
    try:
        outcomes = reproduce_cells(args.out, keys, progress=not args.quiet)
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    for outcome in outcomes:
        print(outcome.describe())
    exact = sum(o.exact for o in outcomes)
    print(f"{exact} of {len(outcomes)} cells reproduced exactly from the LM cache")
    if args.record:
        from promptopt.io import write_json_atomic
        from promptopt.provenance import collect

        record = {
            "out": str(args.out),
            "exact": exact,
            "cells": [o.to_dict() for o in outcomes],
            "provenance": collect().to_dict(),
        }
        print(f"wrote {write_json_atomic(args.record, record)}")
    return 0 if exact == len(outcomes) else 1


def _add_reproduce(sub: Any) -> None:
    p = sub.add_parser(
        "reproduce",
        help="rerun stored cells from the LM cache and check that their numbers come back exactly",
    )
    p.add_argument("--out", required=True, help="the experiment's output directory (its cells/ folder)")
    p.add_argument("--cells", help="comma-separated cell keys (default: every finished cell)")
    p.add_argument("--record", help="also write the outcome of each cell, with provenance, to this JSON file")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_reproduce)


def cmd_summary(args: argparse.Namespace) -> int:
    from promptopt.bench.comparison_summary import comparison_summary, summary_lines
    from promptopt.io import write_json_atomic

    try:
        summary = comparison_summary(args.folders, focus=args.focus)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    options = [] if args.focus == "gepa" else ["--focus", args.focus]
    options += ["--json", args.json] if args.json else []
    options += ["--chart", args.chart] if args.chart else []
    summary["made_by"] = shlex.join(["python", "-m", "promptopt.bench", "summary", *args.folders, *options])
    print("\n".join(summary_lines(summary)))
    if args.json:
        print(f"wrote {write_json_atomic(args.json, summary)}")
    if args.chart:
        from promptopt.bench.summary_chart import summary_chart

        print(f"wrote {summary_chart(summary, args.chart)}")
    return 0


def _add_summary(sub: Any) -> None:
    p = sub.add_parser(
        "summary",
        help="sum up a comparison over run folders: mean lifts, wall time, metric calls, head to head",
    )
    p.add_argument("folders", nargs="+", help="run folders, one per configuration (named by folder name)")
    p.add_argument("--focus", default="gepa", help="the optimizer compared head to head with each other")
    p.add_argument("--json", help="write the summary here (e.g. results/comparison/summary.json)")
    p.add_argument("--chart", help="draw it as a PNG here (e.g. results/comparison/summary.png)")
    p.set_defaults(func=cmd_summary)


def _add_report(sub: Any) -> None:
    p = sub.add_parser("report", help="rebuild report.md, report.csv and charts from stored cells")
    p.add_argument("--out", required=True, help="the experiment's output directory (its cells/ folder)")
    p.set_defaults(func=cmd_report)


def add_subcommands(subparsers: Any) -> None:
    """Add ``bench langprobe|report|reproduce|summary`` to the ``promptopt`` command line."""
    bench = subparsers.add_parser("bench", help="benchmarks: LangProBe matrices and their reports")
    sub = bench.add_subparsers(dest="bench_command", required=True)
    _add_langprobe(sub)
    _add_report(sub)
    _add_reproduce(sub)
    _add_summary(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m promptopt.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="bench_command", required=True)
    _add_langprobe(sub)
    _add_report(sub)
    _add_reproduce(sub)
    _add_summary(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
