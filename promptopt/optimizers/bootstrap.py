"""Bootstrapping few-shot demos from a teacher's successful runs.

The teacher program (by default the program being optimized) runs on training
examples; a run whose metric score reaches the threshold, and in which every
predictor call succeeded, turns each predictor call into a demo for that
predictor: its inputs and its outputs (including intermediate fields and
reasoning that no label holds). Labeled training examples fill the remaining
demo slots.

Limits, per predictor and per demo set:

* at most ``max_bootstrapped_demos`` demos come from teacher runs (from at most
  that many successful runs);
* labeled demos fill up to ``max_labeled_demos`` demos in all, so a set holds
  ``max(bootstrapped, max_labeled_demos)`` demos at most; ``0`` and ``0`` gives
  no demos.

A :class:`Bootstrapper` remembers each example's teacher run, so building many
demo sets (random search, MIPROv2) runs the teacher once per example and round.
A run that could not be scored (the LM or the metric failed) yields no demos
and is run again when a later demo set asks for the example; it is not a
metric call.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from promptopt.core.example import Example
from promptopt.core.program import Program
from promptopt.core.trace import TraceEntry
from promptopt.example_run import ExampleResult
from promptopt.lm_protocol import LanguageModel
from promptopt.optimizers.evaluation import ScoredRuns
from promptopt.optimizers.stoppers import DEFAULT_MAX_CONSECUTIVE_FAILURES, FailureStreak

DemoSet = dict[str, list[Example]]

# Later rounds re-run failed examples with fresh samples; a moderate temperature gives
# a different answer without drifting off the task.
RETRY_TEMPERATURE = 0.7


@dataclass
class Outcome:
    """One teacher run on one training example: passed or not, and its demos per predictor."""

    example_id: str
    passed: bool
    score: float
    demos: dict[str, list[Example]] = field(default_factory=dict)
    error: str | None = None
    scored: bool = True


def trace_demos(result: ExampleResult) -> dict[str, list[Example]]:
    """Each successful predictor call of a run as a demo, grouped by predictor."""
    return call_demos(result.trace)


def call_demos(entries: Iterable[TraceEntry]) -> dict[str, list[Example]]:
    """Each successful predictor call among ``entries`` as a demo (its inputs and outputs), by predictor."""
    out: dict[str, list[Example]] = {}
    for entry in entries:
        if not entry.ok:
            continue
        demo = Example(**entry.inputs, **(entry.outputs or {})).with_inputs(*entry.inputs)
        out.setdefault(entry.predictor, []).append(demo)
    return out


def check_limits(max_bootstrapped_demos: int, max_labeled_demos: int) -> None:
    if max_bootstrapped_demos < 0 or max_labeled_demos < 0:
        raise ValueError("max_bootstrapped_demos and max_labeled_demos must be 0 or more.")


class Bootstrapper(ScoredRuns):
    """Runs a teacher on training examples (each once per round) and builds demo sets.

    Args:
        teacher: the program whose runs become demos; it must have the same predictor names
            as the student.
        metric: scores each teacher run.
        metric_threshold: the score a run needs to become demos (default 1.0: fully correct).
        max_rounds: rounds over the failed examples; rounds after the first sample at
            temperature 0.7 with a fresh ``rollout_id`` so cached replies are not repeated.
        lm: the task LM for the teacher (default: the configured one).
        max_consecutive_failures, streak: stop (raise
            :class:`~promptopt.optimizers.stoppers.ConsecutiveFailuresError`) after this many runs in
            a row could not be scored; ``streak`` shares the count with the run's other evaluations.
        allow_unbounded_metric: accept any finite metric value, not only [0, 1].
    """

    def __init__(
        self,
        teacher: Program,
        metric: Callable[..., Any],
        *,
        metric_threshold: float | None = None,
        max_rounds: int = 1,
        lm: LanguageModel | None = None,
        num_threads: int = 4,
        failure_score: float = 0.0,
        max_consecutive_failures: int | None = DEFAULT_MAX_CONSECUTIVE_FAILURES,
        streak: FailureStreak | None = None,
        allow_unbounded_metric: bool = False,
    ) -> None:
        if max_rounds < 1:
            raise ValueError("max_rounds must be at least 1.")
        self.teacher = teacher
        self.metric = metric
        self.threshold = 1.0 if metric_threshold is None else metric_threshold
        self.max_rounds = max_rounds
        self.lm = lm
        self.num_threads = max(1, num_threads)
        self.failure_score = failure_score
        self.outcomes: dict[tuple[str, int], Outcome] = {}
        self.metric_calls = 0
        self.unscored_calls = 0
        self.streak = streak if streak is not None else FailureStreak(max_consecutive_failures)
        self.allow_unbounded_metric = allow_unbounded_metric
        self._teachers: dict[int, Program] = {}

    def _teacher(self, round_: int) -> Program:
        if round_ not in self._teachers:
            t = self.teacher.deepcopy()
            if round_ > 0:
                for p in t.predictors():
                    p.config = {**p.config, "temperature": RETRY_TEMPERATURE, "rollout_id": round_}
            self._teachers[round_] = t
        return self._teachers[round_]

    def run(self, examples: Sequence[Example], round_: int = 0) -> None:
        """Run the teacher on the examples not yet run (or not yet scored) in this round."""
        todo = [
            e
            for e in examples
            if (e.id, round_) not in self.outcomes or not self.outcomes[(e.id, round_)].scored
        ]
        if not todo:
            return

        def keep(r: ExampleResult) -> None:
            passed = r.error is None and r.score >= self.threshold and all(e.ok for e in r.trace)
            self.outcomes[(r.example.id, round_)] = Outcome(
                example_id=r.example.id,
                passed=passed,
                score=r.score,
                demos=trace_demos(r) if passed else {},
                error=r.error,
                scored=r.scored,
            )
            self._count(r.scored, r.failure, r.error)

        self._evaluate(self._teacher(round_), todo, keep)

    def demo_set(
        self,
        predictors: Sequence[str],
        order: Sequence[Example],
        max_bootstrapped_demos: int,
        max_labeled_demos: int,
    ) -> DemoSet:
        """Demos per predictor: successful runs in ``order`` first, then labeled examples.

        Examples are run lazily, a few at a time (as many as run in parallel), so a set
        that fills up early does not pay for the rest of the training set.
        """
        check_limits(max_bootstrapped_demos, max_labeled_demos)
        boot: DemoSet = {p: [] for p in predictors}
        used: set[str] = set()
        if max_bootstrapped_demos > 0:
            for round_ in range(self.max_rounds):
                pending = [e for e in order if e.id not in used]
                pos = 0
                while pos < len(pending) and len(used) < max_bootstrapped_demos:
                    self.run(pending[pos : pos + self.num_threads], round_)
                    for ex in pending[pos : pos + self.num_threads]:
                        out = self.outcomes[(ex.id, round_)]
                        if not out.passed or len(used) >= max_bootstrapped_demos:
                            continue
                        used.add(ex.id)
                        for name, demos in out.demos.items():
                            if name in boot:
                                boot[name].extend(demos)
                    pos += self.num_threads
                if len(used) >= max_bootstrapped_demos:
                    break
        labeled = [e for e in order if e.id not in used]
        out_set: DemoSet = {}
        for name in predictors:
            demos = boot[name][:max_bootstrapped_demos]
            room = max(0, max_labeled_demos - len(demos))
            out_set[name] = demos + labeled[:room]
        return out_set


def demo_sets(
    bootstrapper: Bootstrapper,
    predictors: Sequence[str],
    trainset: Sequence[Example],
    num_sets: int,
    *,
    max_bootstrapped_demos: int,
    max_labeled_demos: int,
    rng: random.Random,
    first: int = 0,
    labeled_first: bool = True,
) -> list[DemoSet]:
    """``num_sets`` varied demo sets: labeled-only, bootstrapped in training order, then
    bootstrapped from shuffled training orders with a random number (1..max) of runs.

    With ``max_bootstrapped_demos=0`` every set is a different random labeled sample.
    ``first`` skips that many kinds of set, so sets can be built one call at a time
    (drawing from ``rng`` exactly as one call for all of them would). ``labeled_first=False``
    puts the in-order bootstrap before the labeled-only set, so that even two sets include
    a bootstrapped one.
    """
    check_limits(max_bootstrapped_demos, max_labeled_demos)
    train = list(trainset)
    kinds: list[str] = []
    if max_bootstrapped_demos > 0:
        kinds = (["labeled"] if max_labeled_demos > 0 else []) + ["in-order"]
        if not labeled_first:
            kinds.reverse()
    out: list[DemoSet] = []
    for k in range(first, first + num_sets):
        special = k < len(kinds)
        kind = kinds[k] if special else ("shuffled" if max_bootstrapped_demos > 0 else "labeled")
        if kind == "labeled":
            # The labeled-only set takes the first training examples; further ones draw at random.
            order = train if special or k == 0 else rng.sample(train, len(train))
            out.append(bootstrapper.demo_set(predictors, order, 0, max_labeled_demos))
        elif kind == "in-order":
            out.append(bootstrapper.demo_set(predictors, train, max_bootstrapped_demos, max_labeled_demos))
        else:
            order = rng.sample(train, len(train))
            size = rng.randint(1, max_bootstrapped_demos)
            out.append(bootstrapper.demo_set(predictors, order, size, max_labeled_demos))
    return out
