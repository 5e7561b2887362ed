"""BootstrapFewShotWithRandomSearch: demo sets bootstrapped from shuffled training orders, each
scored on the validation set; the best one wins."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from promptopt.core.example import Example
from promptopt.core.program import Program
from promptopt.lm_protocol import LanguageModel
from promptopt.optimizers import phases
from promptopt.optimizers.base import RunOptions
from promptopt.optimizers.baselines.bootstrap_fewshot import BootstrapFewShot
from promptopt.optimizers.baselines.demo_sets import demo_set_run
from promptopt.optimizers.bootstrap import demo_sets
from promptopt.optimizers.callbacks import Callback
from promptopt.optimizers.components import predictor_names, serialize_components, with_demo_set
from promptopt.optimizers.datasets import train_and_val
from promptopt.optimizers.progress import ProgressReport
from promptopt.optimizers.result import OptimizationResult
from promptopt.optimizers.stoppers import (
    DEFAULT_MAX_CONSECUTIVE_FAILURES,
    ConsecutiveFailuresError,
    StopOptions,
    Stopper,
)

RESULT_NAME = "promptopt.BootstrapFewShotWithRandomSearch"


class BootstrapFewShotWithRandomSearch:
    """Random search over demo sets, each scored on the validation set.

    The candidates, in order: the seed program, zero-shot (no demos), labeled-only,
    bootstrapped in training order, then ``num_candidate_programs`` bootstraps from shuffled
    training orders with a random number of bootstrapped demos (1..max). Identical candidates
    are scored once. The best validation score wins (the earlier candidate on ties), two
    candidates being compared on the validation examples both were scored on.

    Args:
        metric, max_bootstrapped_demos, max_labeled_demos, metric_threshold, teacher, max_rounds:
            as for :class:`BootstrapFewShot`.
        num_candidate_programs: the number of shuffled bootstraps.
        max_metric_calls: stop adding candidates once this many metric calls (teacher runs and
            validation runs) are spent; the candidate being scored is finished first.
        max_seconds, max_tokens, max_cost, score_threshold, stoppers: more ways to stop.
        seed: the shuffles and sizes.
        max_consecutive_failures: stop after this many teacher or validation runs in a row could
            not be scored (the LM or the metric failed), with the cause as the stop reason;
            ``resume=True`` then continues. ``None``: never.
        allow_unbounded_metric: accept any finite metric value, not only [0, 1].
    """

    name: ClassVar[str] = "bootstrap_random_search"

    def __init__(
        self,
        metric: Callable[..., Any],
        *,
        num_candidate_programs: int = 8,
        max_bootstrapped_demos: int = 4,
        max_labeled_demos: int = 16,
        metric_threshold: float | None = None,
        teacher: Program | None = None,
        max_rounds: int = 1,
        max_metric_calls: int | None = None,
        max_seconds: float | None = None,
        max_tokens: int | None = None,
        max_cost: float | None = None,
        score_threshold: float | None = None,
        stoppers: Sequence[Stopper] = (),
        seed: int = 0,
        num_threads: int = 4,
        failure_score: float = 0.0,
        callbacks: Sequence[Callback] = (),
        progress: bool = False,
        max_consecutive_failures: int | None = DEFAULT_MAX_CONSECUTIVE_FAILURES,
        allow_unbounded_metric: bool = False,
    ) -> None:
        if num_candidate_programs < 0:
            raise ValueError("num_candidate_programs must be 0 or more.")
        self.base = BootstrapFewShot(
            metric,
            max_bootstrapped_demos=max_bootstrapped_demos,
            max_labeled_demos=max_labeled_demos,
            metric_threshold=metric_threshold,
            teacher=teacher,
            max_rounds=max_rounds,
            num_threads=num_threads,
            failure_score=failure_score,
            max_consecutive_failures=max_consecutive_failures,
            allow_unbounded_metric=allow_unbounded_metric,
        )
        self.metric = metric
        self.num_candidate_programs = num_candidate_programs
        self.max_metric_calls = max_metric_calls
        self.seed = seed
        # No patience keyword here, so the saved config has no patience key either.
        self.run_options = RunOptions(
            num_threads=num_threads,
            failure_score=failure_score,
            max_consecutive_failures=max_consecutive_failures,
            allow_unbounded_metric=allow_unbounded_metric,
            stop=StopOptions(
                max_seconds=max_seconds,
                max_tokens=max_tokens,
                max_cost=max_cost,
                score_threshold=score_threshold,
                extra=tuple(stoppers),
            ),
            callbacks=tuple(callbacks),
            progress=progress,
        )

    def config(self) -> dict[str, Any]:
        return {
            **self.base.config(),
            "num_candidate_programs": self.num_candidate_programs,
            "max_metric_calls": self.max_metric_calls,
            "seed": self.seed,
            **{k: v for k, v in self.run_options.stop.to_dict().items() if k != "patience"},
        }

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
        """Score every candidate on ``valset`` (default: the trainset) and return the best.

        ``resume=True`` with a ``run_dir`` reuses the validation scores saved there, so a
        killed search re-scores nothing (teacher runs are repeated; the LM cache serves them).
        """
        names = predictor_names(program)
        train, val = train_and_val(trainset, valset, who="BootstrapFewShotWithRandomSearch")
        # The progress report is this optimizer's own (one update per candidate), not the session's.
        with demo_set_run(
            RESULT_NAME,
            self,
            program,
            lm=lm,
            run_dir=run_dir,
            resume=resume,
            max_metric_calls=self.max_metric_calls,
        ) as run:
            session = run.session
            reason = "all candidates scored"
            shown = (
                ProgressReport("random search", self.max_metric_calls) if self.run_options.progress else None
            )
            boot = self.base.bootstrapper(program, session.lm, session.streak)
            try:
                run.add(serialize_components(program.components()), "seed", val)
                run.add(with_demo_set(program, {n: [] for n in names}), "zero-shot", val)
                rng = random.Random(self.seed)
                origins = self._origins()
                total = 2 + len(origins)
                for k, origin in enumerate(origins):
                    stop = session.stop_reason(run.progress())
                    if stop:
                        reason = stop
                        break
                    # One set at a time, so a stopper can end the search between candidates.
                    with run.session.clock.time(phases.BOOTSTRAP):
                        (demos,) = demo_sets(
                            boot,
                            names,
                            train,
                            1,
                            max_bootstrapped_demos=self.base.max_bootstrapped_demos,
                            max_labeled_demos=self.base.max_labeled_demos,
                            rng=rng,
                            first=k,
                        )
                    run.set_teacher_runs(boot.metric_calls, boot.unscored_calls)
                    run.add(with_demo_set(program, demos), origin, val)
                    if shown is not None:
                        p = run.progress()
                        shown.update(
                            p.metric_calls, p.best_score, candidates=f"{len(run.candidates)}/{total}"
                        )
            except KeyboardInterrupt:
                reason = "interrupted (Ctrl-C)"
            except ConsecutiveFailuresError as exc:
                reason = str(exc)
                run.set_teacher_runs(boot.metric_calls, boot.unscored_calls)
                run.save_state()
            if shown is not None:
                shown.close()
            return run.result(run.best_scored(0), reason, self.config())

    def _origins(self) -> list[str]:
        if self.base.max_bootstrapped_demos == 0:
            return ["labeled"] + [f"labeled:shuffled-{i}" for i in range(self.num_candidate_programs)]
        head = ["labeled"] if self.base.max_labeled_demos > 0 else []
        return [*head, "bootstrap", *[f"bootstrap:shuffled-{i}" for i in range(self.num_candidate_programs)]]
