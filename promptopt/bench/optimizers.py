"""The optimizers a LangProBe cell can run, all behind one call.

Every entry takes the same seed program, metric, splits, task LM, reflection/proposer LM, seed,
budget (in metric calls) and run directory, and returns an
:class:`~promptopt.optimizers.result.OptimizationResult` with ``best_program`` set. Modules are
imported only when an optimizer runs, so a missing optional piece (DSPy, the gepa library) makes
that optimizer's cells fail with "not available: ..." while the rest of the matrix runs.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from promptopt.core.example import Example
from promptopt.core.program import Program
from promptopt.optimizers.components import serialize_components
from promptopt.optimizers.result import Budget, Candidate, OptimizationResult


class OptimizerUnavailableError(RuntimeError):
    """The optimizer's module (or a package it needs) cannot be imported here."""


@dataclass(frozen=True)
class RunContext:
    """Everything an optimizer gets for one cell."""

    program: Program
    metric: Callable[..., Any]
    trainset: Sequence[Example]
    valset: Sequence[Example]
    task_lm: Any
    reflection_lm: Any
    proposer_lm: Any
    budget: int
    seed: int
    run_dir: Path
    num_threads: int = 4
    progress: bool = True
    options: dict[str, Any] = field(default_factory=dict)  # the spec's optimizer_options for it


@dataclass(frozen=True)
class OptimizerEntry:
    name: str
    description: str
    module: str  # imported lazily
    attr: str
    kind: str  # "none" | "promptopt" | "peer"

    def load(self) -> Any:
        try:
            module = importlib.import_module(self.module)
        except ImportError as exc:
            raise OptimizerUnavailableError(f"not available: {exc}") from exc
        obj = getattr(module, self.attr, None)
        if obj is None:
            raise OptimizerUnavailableError(f"not available: {self.module} has no {self.attr}")
        return obj


_P, _PEERS = "promptopt.optimizers", "promptopt.bench.peers"
OPTIMIZERS: dict[str, OptimizerEntry] = {
    e.name: e
    for e in (
        OptimizerEntry("baseline", "no optimization: the seed program", "", "", "none"),
        OptimizerEntry("labeled_fewshot", "k labeled examples as demos", _P, "LabeledFewShot", "promptopt"),
        OptimizerEntry(
            "bootstrap_fewshot", "demos from successful traces", _P, "BootstrapFewShot", "promptopt"
        ),
        OptimizerEntry(
            "bootstrap_rs",
            "bootstrapped demo sets, best on validation (random search)",
            _P,
            "BootstrapFewShotWithRandomSearch",
            "promptopt",
        ),
        OptimizerEntry(
            "mipro",
            "promptopt MIPROv2: instructions x demo sets, Bayesian search",
            _P,
            "MIPROv2",
            "promptopt",
        ),
        OptimizerEntry("gepa", "promptopt GEPA: reflective Pareto evolution", _P, "GEPA", "promptopt"),
        OptimizerEntry("dspy_mipro", "dspy.MIPROv2 (peer)", _PEERS, "run_dspy_mipro", "peer"),
        OptimizerEntry("dspy_gepa", "dspy.GEPA (peer)", _PEERS, "run_dspy_gepa", "peer"),
        OptimizerEntry("gepa_lib", "the gepa library's optimize (peer)", _PEERS, "run_gepa_library", "peer"),
    )
}


def availability(name: str) -> str | None:
    """``None`` when the optimizer can run here, else why not."""
    entry = OPTIMIZERS[name]
    if entry.kind == "none":
        return None
    try:
        entry.load()
    except OptimizerUnavailableError as exc:
        return str(exc)
    return None


def run_optimizer(name: str, ctx: RunContext) -> OptimizationResult:
    """Run optimizer ``name`` on one cell (``resume=True`` on its run directory)."""
    entry = OPTIMIZERS[name]
    if entry.kind == "none":
        return _seed_result(ctx.program)
    obj = entry.load()
    if entry.kind == "peer":
        return _as_result(_call_peer(obj, ctx), ctx.program, name)
    return _as_result(_call_promptopt(obj, ctx), ctx.program, name)


def _seed_result(program: Program) -> OptimizationResult:
    comps = serialize_components(program.components())
    return OptimizationResult(
        optimizer="baseline",
        candidates=[Candidate(id=0, components=comps)],
        best_id=0,
        stop_reason="none",
        best_program=program,
    )


def _accepted(fn: Callable[..., Any]) -> tuple[set[str], bool]:
    params = inspect.signature(fn).parameters
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    return set(params), var_kw


def _filtered(fn: Callable[..., Any], options: dict[str, Any]) -> dict[str, Any]:
    names, _ = _accepted(fn)
    return {k: v for k, v in options.items() if k in names}


def _call_promptopt(cls: type, ctx: RunContext) -> Any:
    """Construct a promptopt optimizer with the options its constructor takes, and compile."""
    options: dict[str, Any] = {
        "metric": ctx.metric,
        "max_metric_calls": ctx.budget,  # a cap for optimizers whose own presets set the search size
        "seed": ctx.seed,
        "num_threads": ctx.num_threads,
        "progress": ctx.progress,
        "score": True,  # few-shot baselines: also score on validation, for the learning curve
        "reflection_lm": ctx.reflection_lm,
    }
    init = _filtered(cls.__init__, options)
    names, _ = _accepted(cls.__init__)
    proposer_arg = next((n for n in ("proposer_lm", "prompt_lm", "prompt_model") if n in names), None)
    if proposer_arg is not None:
        init[proposer_arg] = ctx.proposer_lm
    _check_options(cls.__init__, ctx.options, cls.__name__)
    init.update(ctx.options)
    optimizer = cls(**init)
    compile_options = {
        "valset": list(ctx.valset),
        "lm": ctx.task_lm,
        "run_dir": ctx.run_dir,
        "resume": True,
    }
    return optimizer.compile(ctx.program, list(ctx.trainset), **_filtered(optimizer.compile, compile_options))


def _call_peer(fn: Callable[..., Any], ctx: RunContext) -> Any:
    options = {
        "task_lm": ctx.task_lm,
        "reflection_lm": ctx.reflection_lm,
        "prompt_lm": ctx.proposer_lm,
        "max_metric_calls": ctx.budget,
        "seed": ctx.seed,
        "run_dir": ctx.run_dir,
        "num_threads": ctx.num_threads,
    }
    _check_options(fn, ctx.options, fn.__name__)
    kwargs = {**_filtered(fn, options), **ctx.options}
    return fn(ctx.program, ctx.metric, list(ctx.trainset), list(ctx.valset), **kwargs)


def _check_options(fn: Callable[..., Any], options: dict[str, Any], who: str) -> None:
    names, var_kw = _accepted(fn)
    unknown = sorted(set(options) - names - {"self"})
    if unknown and not var_kw:
        allowed = sorted(n for n in names if n not in ("self", "program", "metric", "trainset", "valset"))
        raise TypeError(
            f"{who} takes no option {unknown[0]!r} (optimizer_options); it takes: {', '.join(allowed)}."
        )


def _as_result(value: Any, seed_program: Program, name: str) -> OptimizationResult:
    if isinstance(value, OptimizationResult):
        if value.best_program is None:
            return replace(value, best_program=value.program_for(seed_program))
        return value
    if isinstance(value, Program):  # an optimizer that returns only the compiled program
        comps = serialize_components(value.components())
        return OptimizationResult(
            optimizer=name,
            candidates=[Candidate(id=0, components=comps)],
            best_id=0,
            budget=Budget(),
            best_program=value,
        )
    raise TypeError(f"{name} returned {type(value).__name__}, not an OptimizationResult or a Program.")
