"""The contract every promptopt optimizer keeps, and the options about running that they share.

An optimizer is any object with a ``name``, a ``config()`` and a ``compile`` as below: GEPA,
MIPROv2, the three few-shot baselines and the peer runners (:mod:`promptopt.peers`) all are, and
:mod:`promptopt.testing.conformance` checks each of them against the points of this contract.

**Construction.** ``Optimizer(metric, **options)`` checks every option and raises ``ValueError``
or ``TypeError`` naming a bad one. It runs nothing and calls no LM.

**compile(program, trainset, valset=None, *, lm=None, run_dir=None, resume=False)** returns an
:class:`~promptopt.optimizers.result.OptimizationResult`:

* ``program`` is left as it was. ``result.candidates[0]`` is the seed program (origin ``"seed"``)
  and ``result.best_program`` the seed program with the components of
  ``result.candidates[result.best_id]``; candidates are compared on validation examples only.
* ``trainset`` and ``valset`` are non-empty with distinct example ids (``valset=None``: the
  trainset, or for the few-shot baselines nothing to score); otherwise ``ValueError``.
* ``lm`` is the task LM (default: ``promptopt.configure(lm=...)``).

**Budget.** A *metric call* is one (candidate, example) run that produced a score; teacher runs
of bootstrapping count too. ``max_metric_calls`` is checked between steps. GEPA plans inside it (a
proposal starts only when the budget left pays for its minibatches and an accepted child's
validation), so it never spends more; the others end at the first check at or past it and may
overshoot by the step under way (a MIPROv2 trial, a bootstrapping round); each optimizer's
docstring bounds it. A run that
ended without a score (the LM or the metric failed) is no metric call: it is counted in
``Budget.unscored_calls``, is never compared, and is run again when the pair is asked for again.
After ``max_consecutive_failures`` of them in a row the run stops with the cause as its
``stop_reason`` and can be resumed once the cause is fixed.

**Run directory.** With ``run_dir`` the run keeps its files there: its state, ``events.jsonl``
(every callback event), ``result.json`` and ``best_program.json`` when it ends. Creating
``RUN_DIR/STOP`` ends the run after the step under way. One process runs in a run directory at a
time (a second one gets :class:`~promptopt.optimizers.rundir.RunDirBusyError`), except MIPROv2
workers, which share one on purpose.

**Resume.** ``resume=True`` continues the run saved in ``run_dir``: nothing already scored is
scored again, and a run resumed after a kill at any point ends with the result the uninterrupted
run would have had (its ``budget.seconds`` aside) for GEPA, MIPROv2 with one worker,
LabeledFewShot and BootstrapFewShot. BootstrapFewShotWithRandomSearch and the gepa library end
with the same candidates, scores and choice, though they redo teacher runs or rescore a few pairs,
which adds to what they spent. Resuming a finished run returns its result. dspy.GEPA and
dspy.MIPROv2 resume as far as DSPy can (see each one). ``resume=False`` starts over and
discards what the run directory held.

**Callbacks.** ``callbacks=[...]`` see typed events (:mod:`promptopt.optimizers.callbacks`):
``run_start`` first and ``run_end`` (with the result) last; a callback that raises is logged
and the run goes on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from promptopt.optimizers.stoppers import DEFAULT_MAX_CONSECUTIVE_FAILURES, FailureStreak, StopOptions

if TYPE_CHECKING:
    from promptopt.core.example import Example
    from promptopt.core.program import Program
    from promptopt.lm_protocol import LanguageModel
    from promptopt.optimizers.result import OptimizationResult


@runtime_checkable
class Optimizer(Protocol):
    """What every optimizer provides (see the module docstring for the contract)."""

    name: ClassVar[str]

    def config(self) -> dict[str, Any]:
        """The options that decide what a run does, as JSON-able values (saved in the result)."""
        ...

    def compile(
        self,
        program: Program,
        trainset: Sequence[Example],
        valset: Sequence[Example] | None = None,
        *,
        lm: LanguageModel | None = None,
        run_dir: str | Path | None = None,
        resume: bool = False,
    ) -> OptimizationResult:
        """Optimize ``program``; see the module docstring for what the result holds."""
        ...


@dataclass(frozen=True)
class RunOptions:
    """How a run is carried out, as opposed to what it searches: the options GEPA, MIPROv2 and
    the few-shot baselines share (each takes them as keywords of the same names).

    Attributes:
        num_threads: examples evaluated in parallel.
        failure_score: the score an unscored example is given where every record is averaged
            (never compared: see :class:`~promptopt.optimizers.evaluation.Record`).
        max_consecutive_failures: stop after this many runs in a row could not be scored
            (``None``: never).
        allow_unbounded_metric: accept any finite metric value, not only [0, 1].
        stop: the optional limits (time, tokens, cost, patience, score) and extra stoppers.
        callbacks: :class:`~promptopt.optimizers.callbacks.Callback` instances.
        progress: a live progress line on stderr.
    """

    num_threads: int = 4
    failure_score: float = 0.0
    max_consecutive_failures: int | None = DEFAULT_MAX_CONSECUTIVE_FAILURES
    allow_unbounded_metric: bool = False
    stop: StopOptions = field(default_factory=StopOptions)
    callbacks: tuple[object, ...] = ()
    progress: bool = True

    def __post_init__(self) -> None:
        if self.num_threads < 1:
            raise ValueError(f"num_threads must be at least 1, not {self.num_threads}.")
        FailureStreak(self.max_consecutive_failures)  # checks the limit now, not at compile time

    def failure_config(self) -> dict[str, Any]:
        """The keys a result's config records about failures."""
        return {
            "failure_score": self.failure_score,
            "max_consecutive_failures": self.max_consecutive_failures,
            "allow_unbounded_metric": self.allow_unbounded_metric,
        }
