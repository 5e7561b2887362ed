"""BootstrapFewShot: demos from the teacher's successful training runs, filled up with labeled ones."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from promptopt.core.example import Example
from promptopt.core.program import Program
from promptopt.lm_protocol import LanguageModel
from promptopt.optimizers import phases
from promptopt.optimizers.base import RunOptions
from promptopt.optimizers.baselines.demo_sets import demo_set_run, scoring_valset
from promptopt.optimizers.bootstrap import Bootstrapper, check_limits
from promptopt.optimizers.callbacks import Callback
from promptopt.optimizers.components import predictor_names, serialize_components, with_demo_set
from promptopt.optimizers.datasets import check_dataset
from promptopt.optimizers.result import OptimizationResult
from promptopt.optimizers.stoppers import (
    DEFAULT_MAX_CONSECUTIVE_FAILURES,
    ConsecutiveFailuresError,
    FailureStreak,
)


class BootstrapFewShot:
    """Demos from the teacher's successful training runs, filled up with labeled examples.

    Args:
        metric: scores each teacher run (and validation runs when ``score=True``).
        max_bootstrapped_demos: at most this many demos per predictor from teacher runs.
        max_labeled_demos: labeled examples fill each predictor's demos up to this many.
        metric_threshold: the score a run needs to become demos (default 1.0).
        teacher: the program that runs on the training set (default: the program itself);
            it must have the same predictor names.
        max_rounds: passes over the training examples that failed (later passes sample anew).
        score: also score the seed and the new program on the validation set.
        num_threads: parallel examples.
        max_consecutive_failures: stop after this many teacher or validation runs in a row could
            not be scored (the LM or the metric failed), with the cause as the stop reason;
            ``None``: never.
        allow_unbounded_metric: accept any finite metric value, not only [0, 1].
    """

    name: ClassVar[str] = "bootstrap_few_shot"

    def __init__(
        self,
        metric: Callable[..., Any],
        *,
        max_bootstrapped_demos: int = 4,
        max_labeled_demos: int = 16,
        metric_threshold: float | None = None,
        teacher: Program | None = None,
        max_rounds: int = 1,
        score: bool = False,
        num_threads: int = 4,
        failure_score: float = 0.0,
        callbacks: Sequence[Callback] = (),
        max_consecutive_failures: int | None = DEFAULT_MAX_CONSECUTIVE_FAILURES,
        allow_unbounded_metric: bool = False,
    ) -> None:
        check_limits(max_bootstrapped_demos, max_labeled_demos)
        self.metric = metric
        self.max_bootstrapped_demos = max_bootstrapped_demos
        self.max_labeled_demos = max_labeled_demos
        self.metric_threshold = metric_threshold
        self.teacher = teacher
        self.max_rounds = max_rounds
        self.score = score
        self.run_options = RunOptions(
            num_threads=num_threads,
            failure_score=failure_score,
            max_consecutive_failures=max_consecutive_failures,
            allow_unbounded_metric=allow_unbounded_metric,
            callbacks=tuple(callbacks),
            progress=False,
        )

    def config(self) -> dict[str, Any]:
        return {
            "max_bootstrapped_demos": self.max_bootstrapped_demos,
            "max_labeled_demos": self.max_labeled_demos,
            "metric_threshold": self.metric_threshold,
            "max_rounds": self.max_rounds,
            "teacher": type(self.teacher).__name__ if self.teacher is not None else None,
            "max_consecutive_failures": self.run_options.max_consecutive_failures,
            "allow_unbounded_metric": self.run_options.allow_unbounded_metric,
        }

    def bootstrapper(
        self, program: Program, lm: LanguageModel | None, streak: FailureStreak | None = None
    ) -> Bootstrapper:
        """The teacher's runner for ``program`` (on ``lm``), sharing the run's failure ``streak``."""
        teacher = self.teacher if self.teacher is not None else program
        if predictor_names(teacher) != predictor_names(program):
            raise ValueError(
                f"The teacher's predictors {predictor_names(teacher)} differ from the program's "
                f"{predictor_names(program)}; use a teacher built from the same program class."
            )
        opts = self.run_options
        return Bootstrapper(
            teacher,
            self.metric,
            metric_threshold=self.metric_threshold,
            max_rounds=self.max_rounds,
            lm=lm,
            num_threads=opts.num_threads,
            failure_score=opts.failure_score,
            max_consecutive_failures=opts.max_consecutive_failures,
            streak=streak,
            allow_unbounded_metric=opts.allow_unbounded_metric,
        )

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
        """Bootstrap demos for every predictor; returns the result with ``best_program``."""
        names = predictor_names(program)
        train = check_dataset("trainset", trainset, who="BootstrapFewShot")
        val = scoring_valset(valset, self.score, who="BootstrapFewShot")
        with demo_set_run(
            "promptopt.BootstrapFewShot", self, program, lm=lm, run_dir=run_dir, resume=resume
        ) as run:
            reason = "done"
            try:
                run.add(serialize_components(program.components()), "seed", val)
                if run.restored("bootstrap") is None:  # a resumed run that has it runs no teacher again
                    boot = self.bootstrapper(program, run.session.lm, run.session.streak)
                    try:
                        with run.session.clock.time(phases.BOOTSTRAP):
                            demos = boot.demo_set(
                                names, train, self.max_bootstrapped_demos, self.max_labeled_demos
                            )
                    finally:
                        run.set_teacher_runs(boot.metric_calls, boot.unscored_calls)
                    run.add(with_demo_set(program, demos), "bootstrap", val)
            except ConsecutiveFailuresError as exc:
                reason = str(exc)
            # Not listed when it equals the seed; not there when the run stopped before it.
            best = next((c.id for c in run.candidates if c.origin == "bootstrap"), 0)
            return run.result(best, reason, self.config())
