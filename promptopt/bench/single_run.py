"""One optimization run from a TOML config: ``promptopt optimize --config run.toml --set k=v``.

The config names the program (a LangProBe task's program, or a task app by URL), the optimizer and
its budget, the splits and the LMs; ``--set`` overrides any key by its dotted path
(``--set options.minibatch_size=4``, ``--set program.task=scone``). The run writes the optimizer's run
directory (resumable: the same command continues a killed run), ``result.json``, and ``summary.json``
with the seed and optimized programs' test scores and provenance. :func:`optimize` is the
in-process equivalent for notebooks::

    optimize(RunConfig.from_dict({"program": {"task": "iris"}, "optimizer": "gepa", "budget": 60}))

    optimizer = "gepa"            # any name of `python -m promptopt.bench list`
    budget = 60                   # metric calls
    out = "runs/optimize/iris"

    [program]
    task = "iris"                 # or: task_app = "http://127.0.0.1:8123" (and token = "...")
    name = "predict"

    [data]
    sizes = [30, 30, 60]          # train, validation, test (a task app brings its own splits)
    split_seed = 0

    [lm]
    task = "local"
    reflection = "local"

    [options]                     # the optimizer's own keywords
    minibatch_size = 3
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from promptopt.bench.optimizers import OPTIMIZERS, RunContext, run_optimizer
from promptopt.evaluate import bootstrap_ci, evaluate
from promptopt.io import write_json_atomic
from promptopt.optimizers.result import OptimizationResult


class RunConfigError(ValueError):
    """A run config that cannot be used; the message names the key and what to write instead."""


@dataclass(frozen=True)
class RunConfig:
    optimizer: str = "gepa"
    budget: int = 60
    seed: int = 0
    threads: int = 2
    out: str = "runs/optimize/run"
    program: Mapping[str, Any] = field(default_factory=dict)  # task + name, or task_app (+ token)
    data: Mapping[str, Any] = field(default_factory=dict)  # sizes, split_seed, data_dir
    lm: Mapping[str, Any] = field(default_factory=dict)  # task, reflection, proposer, max_tokens
    options: Mapping[str, Any] = field(default_factory=dict)

    _KEYS: ClassVar[dict[str, set[str]]] = {
        "program": {"task", "name", "task_app", "token", "timeout"},
        "data": {"sizes", "split_seed", "data_dir"},
        "lm": {"task", "reflection", "proposer", "max_tokens"},
    }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "the config") -> RunConfig:
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise RunConfigError(
                f"Unknown key {unknown[0]!r} in {source}; keys: {', '.join(sorted(allowed))}."
            )
        for table, keys in cls._KEYS.items():
            value = data.get(table, {})
            if not isinstance(value, Mapping):
                raise RunConfigError(f"[{table}] in {source} must be a table, not {value!r}.")
            bad = sorted(set(value) - keys)
            if bad:
                raise RunConfigError(
                    f"Unknown key {table}.{bad[0]} in {source}; [{table}] takes {', '.join(sorted(keys))}."
                )
        config = cls(**{k: v for k, v in data.items()})
        if config.optimizer not in OPTIMIZERS:
            raise RunConfigError(
                f"optimizer = {config.optimizer!r} in {source}; use one of {', '.join(OPTIMIZERS)}."
            )
        if bool(config.program.get("task")) == bool(config.program.get("task_app")):
            raise RunConfigError(f"[program] in {source} needs task = NAME or task_app = URL (one of them).")
        if not isinstance(config.budget, int) or config.budget < 1:
            raise RunConfigError(
                f"budget = {config.budget!r} in {source}; give a positive number of metric calls."
            )
        return config

    @classmethod
    def load(cls, path: str | Path, overrides: Sequence[str] = ()) -> RunConfig:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise RunConfigError(f"Cannot read the run config {path}: {exc.strerror or exc}.") from exc
        except tomllib.TOMLDecodeError as exc:
            raise RunConfigError(f"The run config {path} is not valid TOML: {exc}") from exc
        return cls.from_dict(with_overrides(data, overrides), source=str(path))


def with_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``data`` with each ``dotted.key=value`` set (the value read as TOML, else as a string)."""
    out: dict[str, Any] = {k: dict(v) if isinstance(v, Mapping) else v for k, v in data.items()}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise RunConfigError(f"--set {item!r}: write KEY=VALUE, e.g. --set options.minibatch_size=4.")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        *tables, leaf = key.strip().split(".")
        target = out
        for name in tables:
            nested = target.setdefault(name, {})
            if not isinstance(nested, dict):
                raise RunConfigError(f"--set {item!r}: {name} is not a table.")
            target = nested
        target[leaf] = value
    return out


def _lm(name: str, **options: Any) -> Any:
    import promptopt as po

    return po.LM(name, **options)


def optimize(
    config: RunConfig,
    *,
    lms: Mapping[str, Any] | None = None,
    data_provenance: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the config's optimizer; returns (and writes to ``<out>/summary.json``) the test scores.

    ``data_provenance`` names what the examples came from (``{"iris": {"sha256": ...}}``); a task
    app's data lives behind its URL, so its caller says what it served.
    """
    lms = dict(lms or {})
    task_lm = lms.get("task") or _lm(
        config.lm.get("task", "local"), max_tokens=config.lm.get("max_tokens", 256)
    )
    reflection = lms.get("reflection") or _lm(
        config.lm.get("reflection", "local"), temperature=0.7, max_tokens=700
    )
    proposer = lms.get("proposer") or (
        _lm(config.lm["proposer"], temperature=0.7, max_tokens=700)
        if config.lm.get("proposer")
        else reflection
    )
    from promptopt.lm.identity import lm_identity
    from promptopt.provenance import collect

    # Taken before the run, so the code version is the one that ran even if files change meanwhile.
    identities = {"task": lm_identity(task_lm), "reflection": lm_identity(reflection)}
    provenance = collect(lms=identities, data=data_provenance).to_dict()
    out = Path(config.out)
    app = None
    if config.program.get("task_app"):
        from promptopt.task_apps.program import TaskApp, rollout_score

        app = TaskApp.connect(
            config.program["task_app"],
            lm=task_lm,
            token=config.program.get("token"),
            timeout=float(config.program.get("timeout", 120)),
        )
        program, metric, splits = app.program(), rollout_score, app.examples()
    else:
        from promptopt.tasks import get_task

        task = get_task(config.program["task"])
        name = config.program.get("name") or next(iter(task.programs))
        sizes = config.data.get("sizes")
        splits = task.splits(config.data.get("data_dir"), seed=config.data.get("split_seed", 0), sizes=sizes)
        program, metric = task.program(name), task.metric
    try:
        ctx = RunContext(
            program=program,
            metric=metric,
            trainset=splits.train,
            valset=splits.val,
            task_lm=task_lm,
            reflection_lm=reflection,
            proposer_lm=proposer,
            budget=config.budget,
            seed=config.seed,
            run_dir=out / "run",
            num_threads=config.threads,
            options=dict(config.options),
        )
        result = run_optimizer(config.optimizer, ctx)
        summary = _test_scores(result, program, splits.test, metric, task_lm, config.threads)
    finally:
        if app is not None:
            app.close()
    summary = {"config": dataclasses.asdict(config), **summary, "provenance": provenance}
    write_json_atomic(out / "summary.json", summary)
    return summary


def _test_scores(
    result: OptimizationResult, seed: Any, test: Sequence[Any], metric: Any, lm: Any, threads: int
) -> dict[str, Any]:
    best = result.best_program
    assert best is not None
    runs = [
        evaluate(p, test, metric, lm=lm, num_threads=threads, display_progress=False) for p in (seed, best)
    ]
    diffs = [b.score - a.score for a, b in zip(runs[0].results, runs[1].results, strict=True)]
    low, high = bootstrap_ci(diffs)
    return {
        "optimizer": result.optimizer,
        "stop_reason": result.stop_reason,
        "budget": result.budget.to_dict(),
        "validation": {"seed": result.seed_score, "best": result.best_score},
        "test": {
            "n": len(test),
            "seed": runs[0].score,
            "optimized": runs[1].score,
            "lift": sum(diffs) / len(diffs) if diffs else float("nan"),
            "lift_ci95": [low, high],
            "unscored": [len(r.unscored) for r in runs],
        },
        "best_components": result.best_candidate.components,
    }


def add_subcommand(sub: Any) -> None:
    p = sub.add_parser(
        "optimize", help="one optimization run from a TOML config (see promptopt.bench.single_run)"
    )
    p.add_argument("--config", help="the run config (.toml); without it, --set gives every key")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a dotted key")
    p.set_defaults(func=cmd_optimize)


def cmd_optimize(args: Any) -> int:
    import json
    import sys

    try:
        config = (
            RunConfig.load(args.config, args.set)
            if args.config
            else RunConfig.from_dict(with_overrides({}, args.set), source="--set")
        )
    except RunConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = optimize(config)
    print(
        json.dumps(
            {"optimizer": summary["optimizer"], "validation": summary["validation"], "test": summary["test"]}
        )
    )
    print(f"wrote {Path(config.out) / 'summary.json'} (run directory {Path(config.out) / 'run'})")
    return 0
