"""``promptopt`` command line: evaluate programs, manage the local model server."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from promptopt.core.example import Example
from promptopt.core.metric import exact_match
from promptopt.core.program import Program


def _load_program_file(spec: str) -> Program:
    """``path/to/file.py`` (attribute ``program`` or ``build()``) or ``file.py:attr``."""
    path, _, attr = spec.partition(":")
    module_spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    if module_spec is None or module_spec.loader is None:
        raise SystemExit(f"Cannot import program file {path}.")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    for name in [attr] if attr else ["program", "build"]:
        obj = getattr(module, name, None)
        if obj is None:
            continue
        program = obj() if callable(obj) and not isinstance(obj, Program) else obj
        if isinstance(program, Program):
            return program
    raise SystemExit(
        f"{path} must define `program` (a promptopt.Program) or `build()` returning one"
        + (f", or the attribute {attr!r}" if attr else "")
        + "."
    )


def _load_jsonl(path: str, inputs: list[str]) -> list[Example]:
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    if not inputs:
        raise SystemExit("--data needs --inputs naming the input fields, e.g. --inputs question")
    return [Example(_id=r.pop("id", None), **r).with_inputs(*inputs) for r in rows]


def _metric(spec: str | None, task: Any) -> Any:
    if spec is None:
        if task is None:
            raise SystemExit("Give --metric exact:FIELD (or use --task, which has its own metric).")
        return task.metric
    kind, _, field = spec.partition(":")
    if kind != "exact" or not field:
        raise SystemExit(f"Unknown metric {spec!r}; use exact:FIELD.")
    return exact_match(field)


def cmd_evaluate(args: argparse.Namespace) -> int:
    import promptopt as po

    task = None
    if args.task:
        from promptopt.tasks import get_task

        task = get_task(args.task)
    if args.program_file:
        program = _load_program_file(args.program_file)
    elif task is not None:
        program = task.program(args.program)
    else:
        raise SystemExit("Give --task NAME (a built-in task and program) or --program-file FILE.")
    if args.state:
        program.load(args.state)
    if args.data:
        dataset = _load_jsonl(args.data, args.inputs.split(",") if args.inputs else [])
    elif task is not None:
        splits = task.splits(args.data_dir, seed=args.seed)
        dataset = getattr(splits, args.split)
    else:
        raise SystemExit("Give --data FILE.jsonl or --task NAME.")
    if args.n:
        dataset = dataset[: args.n]
    lm = po.LM(args.lm, max_tokens=args.max_tokens)
    result = po.evaluate(
        program,
        dataset,
        _metric(args.metric, task),
        lm=lm,
        num_threads=args.threads,
        display_progress=not args.quiet,
    )
    print(result.summary())
    if args.out:
        out = Path(args.out)
        (result.to_csv if out.suffix == ".csv" else result.to_json)(out)
        print(f"wrote {out}")
    if args.show_errors:
        for r in result.errors[: args.show_errors]:
            print(f"- {r.example.id}: {r.error}")
    if not result.results:
        print("error: no examples to evaluate", file=sys.stderr)
        return 1
    if len(result.errors) == len(result.results):
        # A score of 0 from a run in which nothing worked says nothing about the program.
        print(_all_failed(result.errors), file=sys.stderr)
        return 1
    return 0


def _all_failed(errors: list[Any]) -> str:
    """Why every example failed: the errors by kind, most frequent first, with one example each."""
    kinds: dict[str, list[Any]] = {}
    for r in errors:
        kinds.setdefault(r.failure or "program or reply", []).append(r)
    parts = [
        f"{len(rs)} {kind} failure{'s' if len(rs) != 1 else ''}, e.g. {rs[0].error}"
        for kind, rs in sorted(kinds.items(), key=lambda kv: -len(kv[1]))
    ]
    return f"error: every example failed ({len(errors)} of {len(errors)}): " + "; ".join(parts)


def cmd_lm(args: argparse.Namespace) -> int:
    from promptopt.lm.model_files import list_models, resolve_model_path
    from promptopt.lm.models import get_model
    from promptopt.lm.server import LocalServer, servers_of

    if args.action == "list":
        for row in list_models():
            print(json.dumps(row))
        return 0
    if args.action == "prepare":
        path = resolve_model_path(args.model)
        print(f"{get_model(args.model).name}: {path}")
        return 0
    if args.action == "build-server":
        from promptopt.lm.server_build import build_llama_server

        print(f"llama-server: {build_llama_server(force=args.force)}")
        return 0
    server = LocalServer.for_model(args.model)
    if args.action == "start":
        server.ensure_running(keep_alive=True)
        print(
            f"{server.spec.name} served by {server.engine.name} at {server.api_base} (pid {server.pid}); "
            "stop it with: promptopt lm stop"
        )
    elif args.action == "status":
        # The one a local LM would use now, and any other left running (another engine or slots).
        others = [s for s in servers_of(args.model) if s.dir != server.dir]
        for each in [server, *others]:
            print(json.dumps(each.status(), indent=2))
    elif args.action == "stop":
        stopped = [s.dir.relative_to(s.dir.parents[1]) for s in servers_of(args.model) if s.stop()]
        print(f"stopped {', '.join(map(str, stopped))}" if stopped else "no server was running")
    elif args.action == "check":
        import promptopt as po

        lm = po.LM(f"local/{server.spec.name}", cache=False)
        c = lm([{"role": "user", "content": "Reply with the single word: ready"}], max_tokens=8)
        print(
            f"{server.spec.name} at {lm.backend.server.api_base}: {c.text.strip()!r} "
            f"({c.prompt_tokens}+{c.completion_tokens} tokens, {c.latency:.2f}s)"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="promptopt", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    ev = sub.add_parser("evaluate", help="score a program on a dataset")
    ev.add_argument("--task", help="built-in LangProBe task (e.g. iris, gsm8k)")
    ev.add_argument("--program", help="program name within the task (default: its first)")
    ev.add_argument("--program-file", help="a .py file defining `program` or `build()` (or file.py:attr)")
    ev.add_argument("--state", help="load components saved with program.save(path)")
    ev.add_argument("--data", help="a JSONL file of examples (instead of a task's split)")
    ev.add_argument("--inputs", help="comma-separated input fields of --data")
    ev.add_argument("--metric", help="exact:FIELD (default: the task's metric)")
    ev.add_argument("--split", default="test", choices=["train", "val", "test"])
    ev.add_argument("--seed", type=int, default=0, help="split seed")
    ev.add_argument("--data-dir", help="data mirror directory (default: $PROMPTOPT_DATA_DIR)")
    ev.add_argument("-n", "--n", type=int, help="score only the first N examples")
    ev.add_argument("--lm", default="local", help="litellm model string, or local / local/<name>")
    ev.add_argument("--max-tokens", type=int, default=512)
    ev.add_argument("--threads", type=int, default=4)
    ev.add_argument("--out", help="write per-example results (.json or .csv)")
    ev.add_argument("--show-errors", type=int, default=3, metavar="N", help="print the first N errors")
    ev.add_argument("-q", "--quiet", action="store_true")
    ev.set_defaults(func=cmd_evaluate)

    lm = sub.add_parser("lm", help="the embedded local model server")
    lm.add_argument(
        "action",
        choices=["list", "prepare", "start", "check", "status", "stop", "build-server"],
        help="build-server: build llama.cpp's llama-server from the pinned llama-cpp-python source "
        "(CPU flags from $CMAKE_ARGS); it then serves local models (PROMPTOPT_LOCAL_SERVER chooses)",
    )
    lm.add_argument("--model", default=None, help="local model name or alias (default: the 0.5B)")
    lm.add_argument("--force", action="store_true", help="build-server: build again even if built")
    lm.set_defaults(func=cmd_lm)

    from promptopt.run_page.page import add_subcommand as add_report
    from promptopt.train.cli import add_subcommand as add_train
    from promptopt.verifiers.cli import add_subcommand as add_judge

    add_train(sub)
    add_judge(sub)
    add_report(sub)

    try:
        from promptopt.bench.cli import add_subcommands
        from promptopt.bench.single_run import add_subcommand as add_optimize
    except ImportError:
        pass
    else:
        add_subcommands(sub)
        add_optimize(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
