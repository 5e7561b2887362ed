"""The optimizers a LangProBe cell can run, all behind one call.

Every entry builds an :class:`~promptopt.optimizers.base.Optimizer` from the cell's
:class:`RunContext` (the seed program's metric, the reflection / proposer LM, the seed, the budget
in metric calls and the spec's options for it), and ``compile`` runs it with the task LM in the
cell's run directory (``resume=True``). Each builder imports its optimizer when it runs, so a
missing optional piece (DSPy, the gepa library) makes that optimizer's cells fail with
"not available: ..." while the rest of the matrix runs.
"""

from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from promptopt.core.example import Example
from promptopt.core.program import Program
from promptopt.optimizers.base import Optimizer
from promptopt.optimizers.components import serialize_components
from promptopt.optimizers.result import Candidate, OptimizationResult


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


def _load(module: str, attr: str) -> Any:
    try:
        return getattr(importlib.import_module(module), attr)
    except ImportError as exc:
        raise OptimizerUnavailableError(f"not available: {exc}") from exc


_P, _PEERS = "promptopt.optimizers", "promptopt.peers"


def _searching(ctx: RunContext, *, progress: bool = True) -> dict[str, Any]:
    """The options every searching optimizer gets from a cell: the budget (which caps the search
    size of those with presets), the seed, the threads, and the spec's options for it."""
    common = {"max_metric_calls": ctx.budget, "seed": ctx.seed, "num_threads": ctx.num_threads}
    return {**common, **({"progress": ctx.progress} if progress else {}), **ctx.options}


# How each optimizer is built for a cell. The few-shot baselines also score on validation
# (``score=True``) so their results carry the learning curve the others have.
def _labeled(ctx: RunContext) -> Optimizer:
    cls = _load(_P, "LabeledFewShot")
    return cls(metric=ctx.metric, seed=ctx.seed, score=True, num_threads=ctx.num_threads, **ctx.options)


def _bootstrap(ctx: RunContext) -> Optimizer:
    cls = _load(_P, "BootstrapFewShot")
    return cls(ctx.metric, score=True, num_threads=ctx.num_threads, **ctx.options)


def _random_search(ctx: RunContext) -> Optimizer:
    return _load(_P, "BootstrapFewShotWithRandomSearch")(ctx.metric, **_searching(ctx))


def _mipro(ctx: RunContext) -> Optimizer:
    return _load(_P, "MIPROv2")(ctx.metric, proposer_lm=ctx.proposer_lm, **_searching(ctx))


def _gepa(ctx: RunContext) -> Optimizer:
    return _load(_P, "GEPA")(ctx.metric, reflection_lm=ctx.reflection_lm, **_searching(ctx))


def _dspy_mipro(ctx: RunContext) -> Optimizer:
    cls = _load(_PEERS, "DspyMIPROv2")
    return cls(ctx.metric, prompt_lm=ctx.proposer_lm, **_searching(ctx, progress=False))


def _dspy_gepa(ctx: RunContext) -> Optimizer:
    cls = _load(_PEERS, "DspyGEPA")
    return cls(ctx.metric, reflection_lm=ctx.reflection_lm, **_searching(ctx, progress=False))


def _gepa_library(ctx: RunContext) -> Optimizer:
    cls = _load(_PEERS, "GepaLibrary")
    return cls(ctx.metric, reflection_lm=ctx.reflection_lm, **_searching(ctx, progress=False))


@dataclass(frozen=True)
class OptimizerEntry:
    name: str
    description: str
    kind: str  # "none" | "promptopt" | "peer"
    build: Callable[[RunContext], Optimizer] | None  # None: the seed program itself
    needs: tuple[str, ...] = ()  # modules it imports when built
    # What of the spec besides the task LM its cells read: "budget" (the metric-call budget) and
    # "helper_lms" (the reflection and proposer LMs). What a cell does not read is not part of its
    # identity, so one such cell serves every spec that differs only there.
    reads: frozenset[str] = frozenset({"budget", "helper_lms"})

    def check(self) -> None:
        for module in self.needs:
            try:
                importlib.import_module(module)
            except ImportError as exc:
                raise OptimizerUnavailableError(f"not available: {exc}") from exc


_DSPY = ("dspy", "promptopt.peers")
OPTIMIZERS: dict[str, OptimizerEntry] = {
    e.name: e
    for e in (
        OptimizerEntry("baseline", "no optimization: the seed program", "none", None, reads=frozenset()),
        OptimizerEntry(
            "labeled_fewshot", "k labeled examples as demos", "promptopt", _labeled, reads=frozenset()
        ),
        OptimizerEntry(
            "bootstrap_fewshot", "demos from successful traces", "promptopt", _bootstrap, reads=frozenset()
        ),
        OptimizerEntry(
            "bootstrap_rs",
            "bootstrapped demo sets, best on validation (random search)",
            "promptopt",
            _random_search,
            reads=frozenset({"budget"}),
        ),
        OptimizerEntry(
            "mipro", "promptopt MIPROv2: instructions x demo sets, Bayesian search", "promptopt", _mipro
        ),
        OptimizerEntry("gepa", "promptopt GEPA: reflective Pareto evolution", "promptopt", _gepa),
        OptimizerEntry("dspy_mipro", "dspy.MIPROv2 (peer)", "peer", _dspy_mipro, _DSPY),
        OptimizerEntry("dspy_gepa", "dspy.GEPA (peer)", "peer", _dspy_gepa, _DSPY),
        OptimizerEntry(
            "gepa_lib", "the gepa library's optimize (peer)", "peer", _gepa_library, ("gepa", *_DSPY)
        ),
    )
}


VARIANT_LABEL = re.compile(r"[A-Za-z0-9_-]+")


def base_name(name: str) -> str:
    """The registered optimizer behind ``name``: ``gepa@adaptive`` is a variant of ``gepa`` (its
    options are ``optimizer_options["gepa@adaptive"]``), so one matrix can compare settings."""
    return name.split("@", 1)[0]


def optimizer_entry(name: str) -> OptimizerEntry:
    """The registry entry behind ``name`` (a variant's is its optimizer's)."""
    return OPTIMIZERS[base_name(name)]


def check_optimizer_name(name: str) -> str | None:
    """Why ``name`` names no optimizer of the registry or variant of one; None when it does."""
    base, _, label = name.partition("@")
    if base not in OPTIMIZERS:
        return f"Unknown optimizer {name!r}; allowed: {', '.join(OPTIMIZERS)}, or NAME@LABEL for a variant."
    if "@" in name and (base == "baseline" or not VARIANT_LABEL.fullmatch(label)):
        return (
            f"Optimizer variant {name!r}: the label after '@' must be letters, digits, '_' or '-', "
            "and the seed program (baseline) has no variants."
        )
    return None


def availability(name: str) -> str | None:
    """``None`` when the optimizer can run here, else why not."""
    try:
        OPTIMIZERS[base_name(name)].check()
    except OptimizerUnavailableError as exc:
        return str(exc)
    return None


def build_optimizer(name: str, ctx: RunContext) -> Optimizer:
    """The optimizer ``name`` for one cell; an option it does not take is named in the error."""
    entry = OPTIMIZERS[base_name(name)]
    if entry.build is None:
        raise ValueError(f"{name} is the seed program, not an optimizer.")
    entry.check()
    try:
        return entry.build(ctx)
    except TypeError as exc:
        match = re.search(r"unexpected keyword argument '(\w+)'", str(exc))
        if not (ctx.options and match and match.group(1) in ctx.options):
            raise
        # The options an optimizer records in its config are the ones it takes.
        known = sorted(entry.build(replace(ctx, options={})).config())
        close = difflib.get_close_matches(match.group(1), known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; its options include: {', '.join(known)}"
        raise TypeError(f"{name} takes no option {match.group(1)!r} (optimizer_options){hint}") from exc


def run_optimizer(name: str, ctx: RunContext) -> OptimizationResult:
    """Run optimizer ``name`` on one cell (``resume=True`` on its run directory)."""
    if OPTIMIZERS[base_name(name)].build is None:
        return _seed_result(ctx.program)
    optimizer = build_optimizer(name, ctx)
    return optimizer.compile(
        ctx.program, list(ctx.trainset), list(ctx.valset), lm=ctx.task_lm, run_dir=ctx.run_dir, resume=True
    )


def _seed_result(program: Program) -> OptimizationResult:
    comps = serialize_components(program.components())
    return OptimizationResult(
        optimizer="baseline",
        candidates=[Candidate(id=0, components=comps)],
        best_id=0,
        stop_reason="none",
        best_program=program,
    )
