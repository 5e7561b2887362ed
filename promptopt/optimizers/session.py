"""One ``compile`` call's bookkeeping, shared by every optimizer: an optimizer writes its search
loop and leaves the rest to a :class:`RunSession`.

The session owns the run directory and its lock, the candidate evaluator and its failure streak,
the events (the caller's callbacks, ``events.jsonl``, the progress line), the stoppers, the LM
usage of the run (with what earlier processes of a resumed run spent), turning that spending
into :class:`~promptopt.optimizers.stoppers.Progress` and
:class:`~promptopt.optimizers.result.Budget`, and building, saving and announcing the result.
Use it as a context manager around the search: it holds the lock and counts LM usage inside.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any

from promptopt.core import settings
from promptopt.core.program import Program
from promptopt.lm.usage import Usage, track_usage
from promptopt.lm_protocol import LanguageModel
from promptopt.optimizers.base import RunOptions
from promptopt.optimizers.callbacks import Dispatcher, EventLog
from promptopt.optimizers.evaluation import CandidateEvaluator
from promptopt.optimizers.phase_clock import PhaseClock
from promptopt.optimizers.progress import ProgressBar
from promptopt.optimizers.result import Budget, Candidate, OptimizationResult
from promptopt.optimizers.rundir import RunDir
from promptopt.optimizers.stoppers import FailureStreak, Progress, Stopper, first_reason


class RunSession:
    """What one compile call owns (see the module docstring).

    Args:
        result_name: the optimizer's name in its result (``"promptopt.GEPA"``).
        program: the seed program; ``best_program`` is built from it.
        metric: the run's metric (``None``: a run that scores nothing).
        options: how the run is carried out (threads, failures, stop limits, callbacks).
        lm: the task LM (default: the configured one).
        run_dir, resume: the run directory, and whether to continue the run saved there.
        max_metric_calls: the budget the stoppers and the progress line know.
        progress_label: the progress line's name (``None``: no progress line).
        shared: the run directory is shared by several processes on purpose (MIPROv2 workers),
            which coordinate through locks of their own; otherwise the session holds it alone.
    """

    def __init__(
        self,
        result_name: str,
        program: Program,
        metric: Callable[..., Any] | None,
        options: RunOptions,
        *,
        lm: LanguageModel | None,
        run_dir: str | Path | None,
        resume: bool,
        max_metric_calls: int | None = None,
        progress_label: str | None = None,
        shared: bool = False,
    ) -> None:
        self.result_name = result_name
        self.program = program
        self.options = options
        self.lm = lm or settings.get("lm")
        self.rundir = RunDir(run_dir) if run_dir else None
        self.resume = resume
        self.shared = shared
        callbacks: list[object] = list(options.callbacks)
        if self.rundir:
            callbacks.append(EventLog(self.rundir.events_file))
        if options.progress and progress_label:
            callbacks.append(ProgressBar(progress_label, max_metric_calls))
        self.events = Dispatcher(callbacks)
        self.stoppers: list[Stopper] = options.stop.stoppers(
            max_metric_calls=max_metric_calls, stop_file=self.rundir.stop_file if self.rundir else None
        )
        # One count of failures in a row over every evaluation of the run; never saved, so a
        # resumed run starts counting anew.
        self.streak = FailureStreak(options.max_consecutive_failures)
        self.evaluator: CandidateEvaluator | None = None
        if metric is not None:
            self.evaluator = CandidateEvaluator(
                program,
                metric,
                num_threads=options.num_threads,
                failure_score=options.failure_score,
                lm=self.lm,
                streak=self.streak,
                allow_unbounded_metric=options.allow_unbounded_metric,
            )
        self.clock = PhaseClock()  # wall time per phase, earlier processes' included
        if self.evaluator is not None:
            self.evaluator.clock = self.clock
        self.usage = Usage()  # this process's, while the session is open
        self._usage_before = Usage()
        self._seconds_before = 0.0
        self._t0 = time.time()
        self._tracking: Any = None

    # --- lifecycle ------------------------------------------------------------------
    def __enter__(self) -> RunSession:
        if self.rundir and not self.shared:
            self.rundir.lock()
        try:
            self._tracking = track_usage()
            self.usage = self._tracking.__enter__()
        except BaseException:
            self._unlock()
            raise
        self._t0 = time.time()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self._tracking.__exit__(kind, exc, tb)
        finally:
            self._unlock()

    def _unlock(self) -> None:
        if self.rundir and not self.shared:
            self.rundir.unlock()

    # --- saved state ----------------------------------------------------------------
    def saved_state(self) -> dict[str, Any] | None:
        """The state a resumed run continues from; a fresh run (``resume=False``) discards it."""
        if self.rundir is None or not self.rundir.has_state():
            return None
        if self.resume:
            return self.rundir.load_state()
        self.rundir.clear()
        return None

    def save_state(self, state: dict[str, Any]) -> None:
        if self.rundir:
            self.rundir.save_state(state)

    def restore_evaluator(
        self, records: dict[str, dict[str, Any]], metric_calls: int, unscored_calls: int
    ) -> CandidateEvaluator:
        """The evaluator, holding what a saved run had scored and spent."""
        if self.evaluator is None:
            raise RuntimeError("This run has no metric, so it has no scores to restore.")
        evaluator = self.evaluator
        evaluator.records = dict(records)
        evaluator.metric_calls, evaluator.unscored_calls = metric_calls, unscored_calls
        return evaluator

    def restore_spending(
        self, usage: dict[str, Any], seconds: float, seconds_by_phase: dict[str, float] | None = None
    ) -> None:
        """What earlier processes of a resumed run spent, added to this one's totals."""
        self._usage_before = Usage.from_dict(usage)
        self._seconds_before = seconds
        for phase, spent in (seconds_by_phase or {}).items():
            self.clock.add(phase, spent)

    # --- spending -------------------------------------------------------------------
    def total_usage(self) -> Usage:
        total = Usage.from_dict(self._usage_before.to_dict())
        total.merge(self.usage)
        return total

    def seconds(self) -> float:
        return self._seconds_before + (time.time() - self._t0)

    def progress(
        self,
        *,
        iteration: int,
        metric_calls: int,
        best_score: float = float("-inf"),
        last_improvement_iteration: int = 0,
        usage: Usage | None = None,
        seconds: float | None = None,
        into: Progress | None = None,
    ) -> Progress:
        """The run's progress; ``usage`` and ``seconds`` default to the session's totals, and
        ``into`` is a saved progress record to update (its start time and history kept)."""
        usage = usage if usage is not None else self.total_usage()
        p = into if into is not None else Progress()
        p.iteration, p.metric_calls = iteration, metric_calls
        p.lm_calls, p.tokens, p.cost = usage.calls, usage.total_tokens, usage.cost
        p.seconds = self.seconds() if seconds is None else seconds
        p.best_score = best_score
        p.last_improvement_iteration = last_improvement_iteration
        return self.streak.fill(p)

    def stop_reason(self, progress: Progress) -> str | None:
        return first_reason(self.stoppers, progress)

    def budget(
        self,
        *,
        metric_calls: int,
        unscored_calls: int = 0,
        proposer_calls: int = 0,
        usage: Usage | None = None,
        seconds: float | None = None,
        metric_calls_by_phase: dict[str, int] | None = None,
        seconds_by_phase: dict[str, float] | None = None,
    ) -> Budget:
        """What the run spent; ``seconds_by_phase`` defaults to this session's clock."""
        usage = usage if usage is not None else self.total_usage()
        by_phase = {phase: n for phase, n in (metric_calls_by_phase or {}).items() if n}
        if by_phase and sum(by_phase.values()) != metric_calls:
            # Calls no phase claimed (e.g. scored pairs of a run saved before phases were kept).
            by_phase["other"] = by_phase.get("other", 0) + metric_calls - sum(by_phase.values())
        return Budget(
            metric_calls=metric_calls,
            lm_calls=usage.calls,
            uncached_lm_calls=usage.uncached_calls,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cost=usage.cost,
            seconds=self.seconds() if seconds is None else seconds,
            proposer_lm_calls=proposer_calls,
            unscored_calls=unscored_calls,
            judge_lm_calls=usage.judge_calls,
            judge_tokens=usage.judge_tokens,
            judge_cost=usage.judge_cost,
            metric_calls_by_phase=by_phase,
            seconds_by_phase=_named_phases(
                self.clock.totals() if seconds_by_phase is None else seconds_by_phase
            ),
        )

    # --- the result -----------------------------------------------------------------
    def start(self, optimizer: str, config: dict[str, Any], resumed: bool) -> None:
        self.events.on_run_start({"optimizer": optimizer, "config": config, "resumed": resumed})

    def result(
        self,
        candidates: Sequence[Candidate],
        best_id: int,
        *,
        budget: Budget,
        stop_reason: str,
        config: dict[str, Any],
        best_program: Program | None = None,
        **details: Any,
    ) -> OptimizationResult:
        """The result (``details``: ``pareto_front``, ``learning_curve``, ``trials``), saved as
        ``result.json`` and ``best_program.json`` in the run directory. ``best_program`` defaults to
        the seed program with the best candidate's components (a peer passes the program it got
        back from its library)."""
        result = OptimizationResult.of_run(
            self.program,
            optimizer=self.result_name,
            candidates=list(candidates),
            best_id=best_id,
            budget=budget,
            stop_reason=stop_reason,
            config=config,
            **details,
        )
        if best_program is not None:
            result = replace(result, best_program=best_program)
        if self.rundir:
            result.save(self.rundir.path / "result.json")
            result.best_program.save(self.rundir.path / "best_program.json")  # type: ignore[union-attr]
        return result

    def end(self, result: OptimizationResult) -> OptimizationResult:
        self.events.on_run_end({"result": result})
        return result


def _named_phases(seconds_by_phase: dict[str, float]) -> dict[str, float]:
    """The phases that took time, rounded; none when no step named its phase (an optimizer that
    does not say where its time went, whose evaluations all count as ``other``)."""
    spent = {phase: round(s, 6) for phase, s in seconds_by_phase.items() if round(s, 6) > 0}
    return spent if set(spent) - {"other"} else {}
