"""The candidates of a few-shot run: demo sets scored on the validation set, kept in the run's
state so that a resumed run scores nothing twice."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from promptopt.core.example import Example
from promptopt.core.program import Program
from promptopt.lm_protocol import LanguageModel
from promptopt.optimizers import phases
from promptopt.optimizers.datasets import check_dataset
from promptopt.optimizers.evaluation import components_key, scores_of
from promptopt.optimizers.result import (
    Budget,
    Candidate,
    OptimizationResult,
    best_candidate,
    compare_on_common,
)
from promptopt.optimizers.session import RunSession
from promptopt.optimizers.stoppers import ConsecutiveFailuresError, Progress


class DemoSetCandidates:
    """The candidate list of one few-shot run on a :class:`RunSession`.

    Teacher runs (bootstrapping) happen outside the session's evaluator; the caller reports them
    with :meth:`add_teacher_runs` so that budgets and progress count them.
    """

    def __init__(self, session: RunSession, optimizer: str) -> None:
        self.session = session
        self.optimizer = optimizer
        self.candidates: list[Candidate] = []
        self.learning_curve: list[tuple[int, float]] = []
        self.teacher_metric_calls = 0
        self.teacher_unscored_calls = 0
        self.resumed = False
        state = session.saved_state()
        if state is not None and session.evaluator is not None:
            if state.get("optimizer") != optimizer:
                raise ValueError(
                    f"{session.rundir.path} holds a {state.get('optimizer')} run, not {optimizer}; "  # type: ignore[union-attr]
                    "use another run directory."
                )
            session.restore_evaluator(
                state.get("records", {}),
                # validation runs of the earlier session count toward the budget
                int(state.get("metric_calls", 0)),
                int(state.get("unscored_calls", 0)),
            )
            # What the earlier processes spent on the candidates they finished; what a killed one
            # spent on the candidate it was scoring is redone here and counted once.
            session.restore_spending(
                state.get("usage", {}), float(state.get("seconds", 0.0)), state.get("seconds_by_phase")
            )
            # The candidates finished before, as they were found (adding one again is a no-op).
            self.candidates = [Candidate.from_dict(c) for c in state.get("candidates", [])]
            self.learning_curve = [(int(a), float(b)) for a, b in state.get("learning_curve", [])]
            self.teacher_metric_calls = int(state.get("teacher_metric_calls", 0))
            self.teacher_unscored_calls = int(state.get("teacher_unscored_calls", 0))
            self.resumed = bool(session.evaluator.records)

    @property
    def metric_calls(self) -> int:
        evaluator = self.session.evaluator
        return self.teacher_metric_calls + (evaluator.metric_calls if evaluator else 0)

    @property
    def unscored_calls(self) -> int:
        evaluator = self.session.evaluator
        return self.teacher_unscored_calls + (evaluator.unscored_calls if evaluator else 0)

    def set_teacher_runs(self, metric_calls: int, unscored_calls: int) -> None:
        self.teacher_metric_calls, self.teacher_unscored_calls = metric_calls, unscored_calls

    def progress(self) -> Progress:
        scored = [c for c in self.candidates if c.val_scores]
        return self.session.progress(
            iteration=len(self.candidates),
            metric_calls=self.metric_calls,
            best_score=best_candidate(scored).val_score if scored else float("-inf"),
        )

    def add(
        self, components: dict[str, Any], origin: str, valset: Sequence[Example] | None
    ) -> Candidate | None:
        """Add a candidate (scored on ``valset`` when given); a duplicate of an earlier one is skipped."""
        key = components_key(components)
        known = next((c for c in self.candidates if components_key(c.components) == key), None)
        if known is not None:
            # A restored candidate an outage left partly scored is completed; a duplicate is skipped.
            if valset is not None and any(e.id not in known.val_scores for e in valset):
                self._complete(known, valset)
            return None
        cand = Candidate(id=len(self.candidates), components=components, origin=origin)
        evaluator = self.session.evaluator
        stopped: ConsecutiveFailuresError | None = None
        if valset is not None and evaluator is not None:
            try:
                cand.val_scores = scores_of(evaluator.run(components, valset, phases.VALIDATION))
            except ConsecutiveFailuresError as exc:
                # Listed with what was scored, so the result shows it; a resumed run scores the rest.
                cand.val_scores, stopped = evaluator.scored(components, valset), exc
            scored = [c for c in self.candidates if c.val_scores]
            best_before = best_candidate(scored) if scored else None
            if cand.val_scores and (best_before is None or compare_on_common(cand, best_before)[0] > 0):
                self.learning_curve.append((self.metric_calls, cand.val_score))
            self.session.events.on_val_evaluated({"candidate_id": cand.id, "score": cand.val_score})
        cand.discovered_at = self.metric_calls
        self.candidates.append(cand)
        self.session.events.on_candidate_accepted({"iteration": cand.id, "candidate": cand.to_dict()})
        self.save_state()
        if stopped is not None:
            raise stopped
        return cand

    def _complete(self, cand: Candidate, valset: Sequence[Example]) -> None:
        evaluator = self.session.evaluator
        if evaluator is None:
            return
        stopped: ConsecutiveFailuresError | None = None
        try:
            got = scores_of(evaluator.run(cand.components, valset, phases.VALIDATION))
        except ConsecutiveFailuresError as exc:
            got, stopped = evaluator.scored(cand.components, valset), exc
        scored = [c for c in self.candidates if c.val_scores and c is not cand]
        best_before = best_candidate(scored) if scored else None
        cand.val_scores = {e.id: got[e.id] for e in valset if e.id in got}
        if cand.val_scores and (best_before is None or compare_on_common(cand, best_before)[0] > 0):
            self.learning_curve.append((self.metric_calls, cand.val_score))
        self.session.events.on_val_evaluated({"candidate_id": cand.id, "score": cand.val_score})
        self.save_state()
        if stopped is not None:
            raise stopped

    def save_state(self) -> None:
        evaluator = self.session.evaluator
        if evaluator is not None:
            self.session.save_state(
                {
                    "optimizer": self.optimizer,
                    "records": evaluator.records,
                    "metric_calls": evaluator.metric_calls,
                    "unscored_calls": evaluator.unscored_calls,
                    "usage": self.session.total_usage().to_dict(),
                    "seconds": self.session.seconds(),
                    "seconds_by_phase": self.session.clock.totals(),
                    "candidates": [c.to_dict() for c in self.candidates],
                    "learning_curve": [list(p) for p in self.learning_curve],
                    "teacher_metric_calls": self.teacher_metric_calls,
                    "teacher_unscored_calls": self.teacher_unscored_calls,
                }
            )

    def result(
        self, best_id: int, stop_reason: str, config: dict[str, Any], proposer_calls: int = 0
    ) -> OptimizationResult:
        evaluator = self.session.evaluator
        by_phase = evaluator.metric_calls_by_phase() if evaluator is not None else {}
        budget: Budget = self.session.budget(
            metric_calls=self.metric_calls,
            unscored_calls=self.unscored_calls,
            proposer_calls=proposer_calls,
            metric_calls_by_phase={phases.BOOTSTRAP: self.teacher_metric_calls, **by_phase},
        )
        result = self.session.result(
            self.candidates,
            best_id,
            budget=budget,
            stop_reason=stop_reason,
            config=config,
            learning_curve=self.learning_curve,
        )
        return self.session.end(result)

    def restored(self, origin: str) -> Candidate | None:
        """The candidate of ``origin`` a resumed run had finished, if any."""
        return next((c for c in self.candidates if c.origin == origin), None)

    def best_scored(self, default: int) -> int:
        scored = [c for c in self.candidates if c.val_scores]
        return best_candidate(scored).id if scored else default


def scoring_valset(valset: Sequence[Example] | None, score: bool, *, who: str) -> list[Example] | None:
    """The validation set to score on: none unless one is given and ``score`` is on."""
    if valset is None:
        return None
    checked = check_dataset("valset", valset, who=who, none_means="to score nothing")
    return checked if score else None


@contextmanager
def demo_set_run(
    result_name: str,
    optimizer: Any,
    program: Program,
    *,
    lm: LanguageModel | None,
    run_dir: str | Path | None,
    resume: bool,
    max_metric_calls: int | None = None,
) -> Iterator[DemoSetCandidates]:
    """A few-shot optimizer's run: its session (open for the block) and candidates, announced with
    ``run_start``."""
    session = RunSession(
        result_name,
        program,
        optimizer.metric,
        optimizer.run_options,
        lm=lm,
        run_dir=run_dir,
        resume=resume,
        max_metric_calls=max_metric_calls,
    )
    with session:
        run = DemoSetCandidates(session, result_name)
        session.start(optimizer.name, optimizer.config(), run.resumed)
        yield run
