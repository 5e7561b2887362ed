"""Few-shot baselines: labeled demos, bootstrapped demos, and a random search over demo sets.

All three share GEPA's shape: ``Optimizer(metric, ...).compile(program, trainset, valset, *, lm,
run_dir, resume) -> OptimizationResult`` with the seed program as candidate 0 and the chosen one
in ``result.best_program``. Demos are set on every predictor; instructions are left alone.

* :class:`LabeledFewShot` — ``k`` random training examples as demos (no LM calls).
* :class:`BootstrapFewShot` — demos from the teacher's successful training runs, filled up
  with labeled examples (see :mod:`promptopt.optimizers.bootstrap`).
* :class:`BootstrapFewShotWithRandomSearch` — zero-shot, labeled-only, in-order bootstrap and
  shuffled bootstraps, each scored on the validation set; the best one wins.

The first two score nothing unless given a validation set *and* ``score=True`` (labeled
few-shot then also needs a ``metric``); their result then carries validation scores too.

Examples the LM or the metric failed on are not scores (see :mod:`promptopt.evaluate`): a
candidate's ``val_scores`` leave them out, candidates are compared on the examples both were
scored on, and a resumed run scores them. After ``max_consecutive_failures`` failures in a row
(default 10) a run stops, saying why, with what it has; ``resume=True`` then continues it.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from promptopt.core import settings
from promptopt.core.example import Example
from promptopt.core.program import Program
from promptopt.lm.usage import Usage, track_usage
from promptopt.lm_protocol import LanguageModel
from promptopt.optimizers.bootstrap import (
    Bootstrapper,
    DemoSet,
    check_dataset,
    check_limits,
    demo_sets,
)
from promptopt.optimizers.callbacks import Callback, Dispatcher, EventLog
from promptopt.optimizers.evaluation import CandidateEvaluator, components_key, scores_of
from promptopt.optimizers.result import (
    Budget,
    Candidate,
    OptimizationResult,
    best_candidate,
    compare_on_common,
    serialize_components,
)
from promptopt.optimizers.rundir import RunDir
from promptopt.optimizers.stoppers import (
    DEFAULT_MAX_CONSECUTIVE_FAILURES,
    ConsecutiveFailuresError,
    FailureStreak,
    Progress,
    StopOptions,
    Stopper,
    build_stoppers,
    first_reason,
)


def predictor_names(program: Program) -> list[str]:
    names = [n for n, _ in program.named_predictors()]
    if not names:
        raise ValueError("The program has no predictors to optimize; build it from Predict/ChainOfThought.")
    return names


def with_demo_set(program: Program, demos: DemoSet) -> dict[str, Any]:
    """The program's serialized components with each predictor's demos replaced."""
    comps = program.components()
    comps.update({f"{name}.demos": list(items) for name, items in demos.items()})
    return serialize_components(comps)


class _Session:
    """What one compile call shares: evaluator, usage, events, stoppers, run directory."""

    def __init__(
        self,
        optimizer: str,
        program: Program,
        metric: Callable[..., Any] | None,
        *,
        lm: LanguageModel | None,
        run_dir: str | Path | None,
        resume: bool,
        num_threads: int,
        failure_score: float,
        callbacks: Sequence[Callback],
        stoppers: list[Stopper],
        config: dict[str, Any],
        max_consecutive_failures: int | None = DEFAULT_MAX_CONSECUTIVE_FAILURES,
        allow_unbounded_metric: bool = False,
    ) -> None:
        self.optimizer = optimizer
        self.program = program
        self.lm = lm or settings.get("lm")
        self.rundir = RunDir(run_dir) if run_dir else None
        self.config = config
        records: dict[str, dict[str, Any]] = {}
        spent = unscored = 0
        if self.rundir and self.rundir.has_state():
            if resume:
                state = self.rundir.load_state()
                if state.get("optimizer") != optimizer:
                    raise ValueError(
                        f"{self.rundir.path} holds a {state.get('optimizer')} run, not {optimizer}; "
                        "use another run directory."
                    )
                records, spent = state.get("records", {}), int(state.get("metric_calls", 0))
                unscored = int(state.get("unscored_calls", 0))
            else:
                self.rundir.clear()
        cbs = list(callbacks) + ([EventLog(self.rundir.events_file)] if self.rundir else [])
        self.events = Dispatcher(cbs)
        self.stoppers = stoppers + (
            [build_stoppers(stop_file=self.rundir.stop_file)[0]] if self.rundir else []
        )
        # One count of failures in a row over validation and teacher runs alike.
        self.streak = FailureStreak(max_consecutive_failures)
        self.evaluator = (
            CandidateEvaluator(
                program,
                metric,
                num_threads=num_threads,
                failure_score=failure_score,
                lm=self.lm,
                records=records,
                metric_calls=spent,  # validation runs of the earlier session count toward the budget
                unscored_calls=unscored,
                streak=self.streak,
                allow_unbounded_metric=allow_unbounded_metric,
            )
            if metric is not None
            else None
        )
        self.candidates: list[Candidate] = []
        self.learning_curve: list[tuple[int, float]] = []
        self.extra_metric_calls = 0  # bootstrapping runs, outside the evaluator
        self.extra_unscored_calls = 0
        self.proposer_calls = 0
        self.t0 = time.time()
        self.usage = Usage()
        self.resumed = bool(records)

    @property
    def metric_calls(self) -> int:
        return self.extra_metric_calls + (self.evaluator.metric_calls if self.evaluator else 0)

    def progress(self) -> Progress:
        scored = [c for c in self.candidates if c.val_scores]
        progress = Progress(
            iteration=len(self.candidates),
            metric_calls=self.metric_calls,
            lm_calls=self.usage.calls,
            tokens=self.usage.total_tokens,
            cost=self.usage.cost,
            seconds=time.time() - self.t0,
            best_score=best_candidate(scored).val_score if scored else float("-inf"),
        )
        return self.streak.fill(progress)

    def stop_reason(self) -> str | None:
        return first_reason(self.stoppers, self.progress())

    def add(
        self, components: dict[str, Any], origin: str, valset: Sequence[Example] | None
    ) -> Candidate | None:
        """Add a candidate (scored on ``valset`` when given); a duplicate of an earlier one is skipped."""
        key = components_key(components)
        if any(components_key(c.components) == key for c in self.candidates):
            return None
        cand = Candidate(id=len(self.candidates), components=components, origin=origin)
        stopped: ConsecutiveFailuresError | None = None
        if valset is not None and self.evaluator is not None:
            try:
                cand.val_scores = scores_of(self.evaluator.run(components, valset))
            except ConsecutiveFailuresError as exc:
                # Listed with what was scored, so the result shows it; a resumed run scores the rest.
                cand.val_scores, stopped = self.evaluator.scored(components, valset), exc
            scored = [c for c in self.candidates if c.val_scores]
            best_before = best_candidate(scored) if scored else None
            if cand.val_scores and (best_before is None or compare_on_common(cand, best_before)[0] > 0):
                self.learning_curve.append((self.metric_calls, cand.val_score))
            self.events.on_val_evaluated({"candidate_id": cand.id, "score": cand.val_score})
        cand.discovered_at = self.metric_calls
        self.candidates.append(cand)
        self.events.on_candidate_accepted({"iteration": cand.id, "candidate": cand.to_dict()})
        self.save_state()
        if stopped is not None:
            raise stopped
        return cand

    def save_state(self) -> None:
        if self.rundir and self.evaluator is not None:
            self.rundir.save_state(
                {
                    "optimizer": self.optimizer,
                    "records": self.evaluator.records,
                    "metric_calls": self.evaluator.metric_calls,
                    "unscored_calls": self.evaluator.unscored_calls,
                }
            )

    def result(self, best_id: int, stop_reason: str) -> OptimizationResult:
        budget = Budget(
            metric_calls=self.metric_calls,
            lm_calls=self.usage.calls,
            uncached_lm_calls=self.usage.uncached_calls,
            prompt_tokens=self.usage.prompt_tokens,
            completion_tokens=self.usage.completion_tokens,
            cost=self.usage.cost,
            seconds=time.time() - self.t0,
            proposer_lm_calls=self.proposer_calls,
            unscored_calls=self.extra_unscored_calls
            + (self.evaluator.unscored_calls if self.evaluator else 0),
        )
        result = OptimizationResult.of_run(
            self.program,
            optimizer=self.optimizer,
            candidates=self.candidates,
            best_id=best_id,
            budget=budget,
            learning_curve=self.learning_curve,
            stop_reason=stop_reason,
            config=self.config,
        )
        if self.rundir:
            result.save(self.rundir.path / "result.json")
            result.best_program.save(self.rundir.path / "best_program.json")
        self.events.on_run_end({"result": result})
        return result


def _scoring_valset(valset: Sequence[Example] | None, score: bool, *, who: str) -> list[Example] | None:
    """The validation set to score on: none unless one is given and ``score`` is on."""
    if valset is None:
        return None
    checked = check_dataset("valset", valset, who=who, none_means="to score nothing")
    return checked if score else None


def _best_scored(candidates: list[Candidate], default: int) -> int:
    scored = [c for c in candidates if c.val_scores]
    if not scored:
        return default
    return best_candidate(scored).id


class LabeledFewShot:
    """``k`` training examples, drawn at random with ``seed``, as every predictor's demos.

    Args:
        k: demos per predictor (fewer when the training set is smaller).
        seed: the random draw.
        metric: only needed with ``score=True``.
        score: also score the seed and the new program on the validation set (both are
            returned either way; the new program is the result's best).
        max_consecutive_failures: with ``score=True``, stop scoring after this many validation
            examples in a row could not be scored (LM or metric failures); ``None``: never.
        allow_unbounded_metric: accept any finite metric value, not only [0, 1].
    """

    name = "labeled_few_shot"

    def __init__(
        self,
        k: int = 16,
        seed: int = 0,
        *,
        metric: Callable[..., Any] | None = None,
        score: bool = False,
        num_threads: int = 4,
        callbacks: Sequence[Callback] = (),
        max_consecutive_failures: int | None = DEFAULT_MAX_CONSECUTIVE_FAILURES,
        allow_unbounded_metric: bool = False,
    ) -> None:
        if k < 0:
            raise ValueError("k must be 0 or more.")
        if score and metric is None:
            raise ValueError("score=True needs a metric: LabeledFewShot(k, metric=...).")
        self.k, self.seed, self.metric, self.score = k, seed, metric, score
        self.num_threads = num_threads
        self.callbacks = list(callbacks)
        self.max_consecutive_failures = max_consecutive_failures
        self.allow_unbounded_metric = allow_unbounded_metric

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
        """Set ``k`` labeled demos on every predictor; returns the result with ``best_program``."""
        names = predictor_names(program)
        train = check_dataset("trainset", trainset, who="LabeledFewShot")
        val = _scoring_valset(valset, self.score, who="LabeledFewShot")
        session = _Session(
            "promptopt.LabeledFewShot",
            program,
            self.metric,
            lm=lm,
            run_dir=run_dir,
            resume=resume,
            num_threads=self.num_threads,
            failure_score=0.0,
            callbacks=self.callbacks,
            stoppers=[],
            config={"k": self.k, "seed": self.seed, "score": self.score},
            max_consecutive_failures=self.max_consecutive_failures,
            allow_unbounded_metric=self.allow_unbounded_metric,
        )
        reason = "done"
        with track_usage() as session.usage:
            try:
                session.add(serialize_components(program.components()), "seed", val)
                demos = random.Random(self.seed).sample(train, min(self.k, len(train)))
                session.add(with_demo_set(program, {n: demos for n in names}), "labeled", val)
            except ConsecutiveFailuresError as exc:
                reason = str(exc)
        # Not listed when the seed already had exactly these demos: the seed is the result then.
        best = next((c.id for c in session.candidates if c.origin == "labeled"), 0)
        return session.result(best, reason)


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

    name = "bootstrap_few_shot"

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
        self.num_threads = num_threads
        self.failure_score = failure_score
        self.callbacks = list(callbacks)
        self.max_consecutive_failures = max_consecutive_failures
        self.allow_unbounded_metric = allow_unbounded_metric

    def config(self) -> dict[str, Any]:
        return {
            "max_bootstrapped_demos": self.max_bootstrapped_demos,
            "max_labeled_demos": self.max_labeled_demos,
            "metric_threshold": self.metric_threshold,
            "max_rounds": self.max_rounds,
            "teacher": type(self.teacher).__name__ if self.teacher is not None else None,
            "max_consecutive_failures": self.max_consecutive_failures,
            "allow_unbounded_metric": self.allow_unbounded_metric,
        }

    def bootstrapper(
        self, program: Program, lm: LanguageModel | None, streak: FailureStreak | None = None
    ) -> Bootstrapper:
        teacher = self.teacher if self.teacher is not None else program
        if predictor_names(teacher) != predictor_names(program):
            raise ValueError(
                f"The teacher's predictors {predictor_names(teacher)} differ from the program's "
                f"{predictor_names(program)}; use a teacher built from the same program class."
            )
        return Bootstrapper(
            teacher,
            self.metric,
            metric_threshold=self.metric_threshold,
            max_rounds=self.max_rounds,
            lm=lm or settings.get("lm"),
            num_threads=self.num_threads,
            failure_score=self.failure_score,
            max_consecutive_failures=self.max_consecutive_failures,
            streak=streak,
            allow_unbounded_metric=self.allow_unbounded_metric,
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
        val = _scoring_valset(valset, self.score, who="BootstrapFewShot")
        session = _Session(
            "promptopt.BootstrapFewShot",
            program,
            self.metric,
            lm=lm,
            run_dir=run_dir,
            resume=resume,
            num_threads=self.num_threads,
            failure_score=self.failure_score,
            callbacks=self.callbacks,
            stoppers=[],
            config=self.config(),
            max_consecutive_failures=self.max_consecutive_failures,
            allow_unbounded_metric=self.allow_unbounded_metric,
        )
        reason = "done"
        with track_usage() as session.usage:
            try:
                session.add(serialize_components(program.components()), "seed", val)
                boot = self.bootstrapper(program, lm, session.streak)
                try:
                    demos = boot.demo_set(names, train, self.max_bootstrapped_demos, self.max_labeled_demos)
                finally:
                    session.extra_metric_calls = boot.metric_calls
                    session.extra_unscored_calls = boot.unscored_calls
                session.add(with_demo_set(program, demos), "bootstrap", val)
            except ConsecutiveFailuresError as exc:
                reason = str(exc)
        # Not listed when it equals the seed; not there when the run stopped before it.
        best = next((c.id for c in session.candidates if c.origin == "bootstrap"), 0)
        return session.result(best, reason)


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

    name = "bootstrap_random_search"

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
        # No patience keyword here, so the saved config has no patience key either.
        self.stop_options = StopOptions(
            max_seconds=max_seconds,
            max_tokens=max_tokens,
            max_cost=max_cost,
            score_threshold=score_threshold,
            extra=tuple(stoppers),
        )
        self.seed = seed
        self.num_threads = num_threads
        self.failure_score = failure_score
        self.callbacks = list(callbacks)
        self.progress = progress

    def config(self) -> dict[str, Any]:
        return {
            **self.base.config(),
            "num_candidate_programs": self.num_candidate_programs,
            "max_metric_calls": self.max_metric_calls,
            "seed": self.seed,
            **{k: v for k, v in self.stop_options.to_dict().items() if k != "patience"},
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
        train = check_dataset("trainset", trainset, who="BootstrapFewShotWithRandomSearch")
        val = check_dataset(
            "valset", train if valset is None else valset, who="BootstrapFewShotWithRandomSearch"
        )
        stoppers = self.stop_options.stoppers(max_metric_calls=self.max_metric_calls)
        session = _Session(
            "promptopt.BootstrapFewShotWithRandomSearch",
            program,
            self.metric,
            lm=lm,
            run_dir=run_dir,
            resume=resume,
            num_threads=self.num_threads,
            failure_score=self.failure_score,
            callbacks=self.callbacks,
            stoppers=stoppers,
            config=self.config(),
            max_consecutive_failures=self.base.max_consecutive_failures,
            allow_unbounded_metric=self.base.allow_unbounded_metric,
        )
        session.events.on_run_start(
            {"optimizer": self.base.name, "config": self.config(), "resumed": session.resumed}
        )
        reason = "all candidates scored"
        boot = self.base.bootstrapper(program, lm, session.streak)
        with track_usage() as session.usage:
            try:
                session.add(serialize_components(program.components()), "seed", val)
                session.add(with_demo_set(program, {n: [] for n in names}), "zero-shot", val)
                rng = random.Random(self.seed)
                origins = self._origins()
                total = 2 + len(origins)
                for k, origin in enumerate(origins):
                    stop = session.stop_reason()
                    if stop:
                        reason = stop
                        break
                    # One set at a time, so a stopper can end the search between candidates.
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
                    session.extra_metric_calls = boot.metric_calls
                    session.extra_unscored_calls = boot.unscored_calls
                    session.add(with_demo_set(program, demos), origin, val)
                    if self.progress:
                        p = session.progress()
                        sys.stderr.write(
                            f"\rrandom search {len(session.candidates)}/{total} | best val "
                            f"{100 * p.best_score:5.1f}% | metric calls {p.metric_calls}   "
                        )
            except KeyboardInterrupt:
                reason = "interrupted (Ctrl-C)"
            except ConsecutiveFailuresError as exc:
                reason = str(exc)
                session.extra_metric_calls = boot.metric_calls
                session.extra_unscored_calls = boot.unscored_calls
                session.save_state()
        if self.progress:
            sys.stderr.write("\n")
        return session.result(_best_scored(session.candidates, 0), reason)

    def _origins(self) -> list[str]:
        if self.base.max_bootstrapped_demos == 0:
            return ["labeled"] + [f"labeled:shuffled-{i}" for i in range(self.num_candidate_programs)]
        head = ["labeled"] if self.base.max_labeled_demos > 0 else []
        return [*head, "bootstrap", *[f"bootstrap:shuffled-{i}" for i in range(self.num_candidate_programs)]]
