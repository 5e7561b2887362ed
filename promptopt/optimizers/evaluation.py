"""Scoring candidates: each (candidate, example) pair is run and scored at most once.

Optimizers describe a candidate by its serialized components; the evaluator
builds the program, runs the examples it has not seen in parallel, and keeps
a JSON-able record of each (score, feedback, prediction, error and a trace
without the rendered messages) so a resumed run needs no re-scoring.

Only scores are kept. An example that could not be scored (the LM raised, the
metric raised or returned an unusable value, the program returned no
Prediction; see :mod:`promptopt.evaluate`) comes back as a :class:`Record`
with ``scored`` false and is run again whenever the pair is asked for again,
in this process or a resumed one. Such runs are not metric calls: they are
counted in ``unscored_calls``. After ``max_consecutive_failures`` of them in a
row, over all evaluations, :meth:`CandidateEvaluator.run` raises
:class:`~promptopt.optimizers.stoppers.ConsecutiveFailuresError` with the cause.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from promptopt.core.example import Example
from promptopt.core.program import Program
from promptopt.core.trace import TraceEntry
from promptopt.evaluate import evaluate
from promptopt.example_run import ExampleResult
from promptopt.lm_protocol import LanguageModel
from promptopt.optimizers.components import deserialize_components
from promptopt.optimizers.phase_clock import PhaseClock
from promptopt.optimizers.stoppers import DEFAULT_MAX_CONSECUTIVE_FAILURES, FailureStreak

log = logging.getLogger("promptopt.evaluation")


@dataclass
class Record:
    """The outcome of one candidate on one example.

    ``failure`` is ``"LM"``, ``"metric"`` or ``"program"`` when the example could not be scored; its
    ``score`` is then only the evaluator's ``failure_score``, for callers that average every record,
    and must not be compared: use ``scored``. ``phase`` names what the pair was first scored for
    (``"minibatch"``, ``"validation"``, ...), which is what its metric call is counted under.
    """

    example_id: str
    score: float
    feedback: str = ""
    prediction: dict[str, Any] | None = None
    error: str | None = None
    trace: list[dict[str, Any]] = field(default_factory=list)
    failure: str | None = None
    phase: str | None = None

    @property
    def scored(self) -> bool:
        return self.failure is None

    def entries(self, predictor: str) -> list[TraceEntry]:
        return [TraceEntry.from_dict(t) for t in self.trace if t["predictor"] == predictor]

    def to_dict(self) -> dict[str, Any]:
        out = {
            "example_id": self.example_id,
            "score": self.score,
            "feedback": self.feedback,
            "prediction": self.prediction,
            "error": self.error,
            "trace": self.trace,
        }
        if self.failure is not None:
            out["failure"] = self.failure
        if self.phase is not None:
            out["phase"] = self.phase
        return out


def components_key(components: dict[str, Any]) -> str:
    blob = json.dumps(components, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def scores_of(records: Sequence[Record]) -> dict[str, float]:
    """Example id -> score of the records that hold a score."""
    return {r.example_id: r.score for r in records if r.scored}


_COUNTING = threading.RLock()


class ScoredRuns:
    """What the candidate evaluator and the bootstrapper share: running a program on examples with
    the run's metric, LM and threads, and counting each run as a metric call (scored) or an unscored
    call (not scored, which also advances the failure ``streak``)."""

    metric: Callable[..., Any]
    num_threads: int
    failure_score: float
    lm: LanguageModel | None
    allow_unbounded_metric: bool
    metric_calls: int
    unscored_calls: int
    streak: FailureStreak

    def _evaluate(
        self, program: Program, examples: Sequence[Example], on_result: Callable[[ExampleResult], None]
    ) -> None:
        evaluate(
            program,
            examples,
            self.metric,
            num_threads=self.num_threads,
            display_progress=False,
            failure_score=self.failure_score,
            lm=self.lm,
            on_result=on_result,
            allow_unbounded_metric=self.allow_unbounded_metric,
        )

    def _count(self, scored: bool, failure: str | None, error: str | None) -> None:
        """Count one run; raises :class:`ConsecutiveFailuresError` when the streak reaches its limit."""
        # Evaluations of several candidates may run at once (GEPA's parallel proposals).
        with _COUNTING:
            if scored:
                self.metric_calls += 1
                self.streak.scored()
            else:
                self.unscored_calls += 1
                self.streak.failed(failure or "evaluation", error or "")


class CandidateEvaluator(ScoredRuns):
    """Runs candidates on examples with a per-(candidate, example) record cache.

    ``metric_calls`` counts the pairs actually run and scored, which is the budget unit of every
    optimizer here; ``unscored_calls`` the runs that ended without a score.

    Args:
        max_consecutive_failures: raise :class:`ConsecutiveFailuresError` after this many examples
            in a row could not be scored (``None``: never); or pass ``streak`` to share one count
            with other evaluations of the run.
        allow_unbounded_metric: accept any finite metric value, not only [0, 1].
    """

    def __init__(
        self,
        program: Program,
        metric: Callable[..., Any],
        *,
        num_threads: int = 4,
        failure_score: float = 0.0,
        lm: LanguageModel | None = None,
        records: dict[str, dict[str, Any]] | None = None,
        metric_calls: int = 0,
        max_consecutive_failures: int | None = DEFAULT_MAX_CONSECUTIVE_FAILURES,
        streak: FailureStreak | None = None,
        allow_unbounded_metric: bool = False,
        unscored_calls: int = 0,
    ) -> None:
        self.program = program
        self.metric = metric
        self.num_threads = num_threads
        self.failure_score = failure_score
        self.lm = lm
        self.records: dict[str, dict[str, Any]] = dict(records or {})
        self.metric_calls = metric_calls
        self.unscored_calls = unscored_calls
        self.streak = streak if streak is not None else FailureStreak(max_consecutive_failures)
        self.allow_unbounded_metric = allow_unbounded_metric
        self._programs: dict[str, Program] = {}
        self._warned: set[str] = set()
        self._in_flight: dict[str, threading.Event] = {}
        self.clock: PhaseClock | None = None  # set by the run's session: wall time per phase

    def build(self, components: dict[str, Any]) -> Program:
        key = components_key(components)
        if key not in self._programs:
            self._programs[key] = self.program.with_components(deserialize_components(components))
        return self._programs[key]

    def cached(self, components: dict[str, Any], examples: Sequence[Example]) -> list[Record] | None:
        """The records if every example was already scored for this candidate, else None."""
        key = components_key(components)
        found = [self.records.get(f"{key}|{ex.id}") for ex in examples]
        if any(r is None for r in found):
            return None
        return [Record(**r) for r in found]  # type: ignore[arg-type]

    def scored(self, components: dict[str, Any], examples: Sequence[Example]) -> dict[str, float]:
        """Example id -> score of the examples already scored for this candidate (nothing is run)."""
        key = components_key(components)
        return {
            ex.id: self.records[f"{key}|{ex.id}"]["score"]
            for ex in examples
            if f"{key}|{ex.id}" in self.records
        }

    def run(
        self, components: dict[str, Any], examples: Sequence[Example], phase: str | None = None
    ) -> list[Record]:
        """A record per example, in order: scored pairs from the cache, the others run now, their
        metric calls counted under ``phase`` (see :meth:`metric_calls_by_phase`).

        Raises :class:`ConsecutiveFailuresError` when the failure streak reaches its limit; the
        examples scored until then are kept.
        """
        if self.clock is None:
            return self._run(components, examples, phase)
        with self.clock.time(phase):
            return self._run(components, examples, phase)

    def _run(
        self, components: dict[str, Any], examples: Sequence[Example], phase: str | None
    ) -> list[Record]:
        key = components_key(components)
        failed: dict[str, Record] = {}

        def keep(r: ExampleResult) -> None:
            rec = _record(r)
            rec.phase = phase
            if rec.scored:
                self.records[f"{key}|{r.example.id}"] = rec.to_dict()
            else:
                failed[r.example.id] = rec
                self._warn(rec)
            self._count(rec.scored, rec.failure, rec.error)

        # Several threads may evaluate the same candidate at once (parallel proposals from one
        # parent): an example another thread is scoring is waited for, never scored twice.
        mine, theirs = self._claim(key, examples)
        try:
            if mine:
                self._evaluate(self.build(components), mine, keep)
        finally:
            self._release(key, mine)
        for done in theirs:
            done.wait()
        # What another thread could not score is tried here (it counts as this run's attempt).
        again = [ex for ex in examples if f"{key}|{ex.id}" not in self.records and ex.id not in failed]
        if again:
            self._evaluate(self.build(components), again, keep)
        out = []
        for ex in examples:
            saved = self.records.get(f"{key}|{ex.id}")
            out.append(Record(**saved) if saved is not None else failed[ex.id])
        return out

    def metric_calls_by_phase(self) -> dict[str, int]:
        """The scored pairs by what they were first scored for (records without a phase: ``other``),
        most first; one record is one metric call, so these add up to the records kept."""
        counts: dict[str, int] = {}
        for rec in self.records.values():
            phase = rec.get("phase") or "other"
            counts[phase] = counts.get(phase, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def _claim(self, key: str, examples: Sequence[Example]) -> tuple[list[Example], list[threading.Event]]:
        """The examples this thread scores now, and the events of those another thread is scoring."""
        mine: list[Example] = []
        theirs: list[threading.Event] = []
        with _COUNTING:
            for ex in examples:
                pair = f"{key}|{ex.id}"
                if pair in self.records:
                    continue
                if pair in self._in_flight:
                    theirs.append(self._in_flight[pair])
                else:
                    self._in_flight[pair] = threading.Event()
                    mine.append(ex)
        return mine, theirs

    def _release(self, key: str, examples: Sequence[Example]) -> None:
        with _COUNTING:
            for ex in examples:
                self._in_flight.pop(f"{key}|{ex.id}").set()

    def _warn(self, rec: Record) -> None:
        # Once per kind: enough to see why scores are missing without flooding a long run's log.
        if rec.failure not in self._warned:
            self._warned.add(rec.failure or "")
            log.warning(
                "example %s could not be scored (%s failure): %s", rec.example_id, rec.failure, rec.error
            )


def _record(r: ExampleResult) -> Record:
    return Record(
        example_id=r.example.id,
        score=r.score,
        feedback=r.feedback,
        prediction=r.prediction.to_dict() if r.prediction is not None else None,
        error=r.error,
        trace=[{k: v for k, v in e.to_dict().items() if k != "messages"} for e in r.trace],
        failure=r.failure,
    )
