"""One execution of MIPROv2.compile: prepare (or load) the search space, run trials, pick.

The totals a run reports and stops on — metric calls, tokens, cost, the best
full score — are summed from the saved search space and the shared study, so
every worker (and a resumed run) sees the same numbers. Work cut short by a
kill (a trial, a full evaluation) is recorded nowhere, so its redo is counted
once; the run as a whole repeats the uninterrupted one (see
:mod:`promptopt.optimizers.mipro.search` for how trials are drawn).

Examples the LM or the metric could not score are run again at once (see
:func:`~promptopt.optimizers.mipro.space.run_until_scored`), so a short outage
changes nothing. After ``max_consecutive_failures`` failures in a row the run
stops with the cause as its stop reason and no end mark: the trial in flight is
left to be redone, a full evaluation keeps the examples it scored, and
``resume=True`` goes on to the result of a run that had no outage. The study
never holds a stand-in score: trials are told only once every example of their
minibatch is scored, and a full evaluation with examples missing is completed
before the next step's work and cannot be chosen until it is.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from optuna.trial import FrozenTrial, Trial

from promptopt.core.example import Example
from promptopt.core.program import ConfigurationError, Program
from promptopt.lm.usage import Usage, track_usage
from promptopt.lm_protocol import LanguageModel
from promptopt.optimizers import phases
from promptopt.optimizers.components import predictor_names
from promptopt.optimizers.datasets import train_and_val
from promptopt.optimizers.evaluation import CandidateEvaluator, Record, components_key
from promptopt.optimizers.mipro.candidates import mean, run_candidates, usage_sum
from promptopt.optimizers.mipro.full_evaluation import FullEvaluation
from promptopt.optimizers.mipro.full_evaluations import FullEvaluations
from promptopt.optimizers.mipro.retries import MAX_STALE_ATTEMPTS, run_until_scored
from promptopt.optimizers.mipro.run_files import MiproRunFiles
from promptopt.optimizers.mipro.search import StoppedWaitingError, combo_key, fitted_minibatch_size, slot_of
from promptopt.optimizers.mipro.search_space import (
    SearchSpace,
)
from promptopt.optimizers.mipro.search_space_builder import SearchSpaceBuilder
from promptopt.optimizers.mipro.storage import default_storage
from promptopt.optimizers.phase_clock import PhaseClock
from promptopt.optimizers.result import OptimizationResult
from promptopt.optimizers.session import RunSession
from promptopt.optimizers.stoppers import ConsecutiveFailuresError, Progress, first_reason

if TYPE_CHECKING:
    from promptopt.optimizers.mipro.engine import MIPROv2

RESULT_NAME = "promptopt.MIPROv2"


class MIPRORun:
    """Owns one compile call: the evaluator, the shared study, events and stoppers."""

    def __init__(
        self,
        opt: MIPROv2,
        program: Program,
        trainset: Sequence[Example],
        valset: Sequence[Example] | None,
        lm: LanguageModel | None,
        run_dir: str | Path | None,
        resume: bool,
    ) -> None:
        self.opt = opt
        self.cfg = cfg = opt.search
        self.program = program
        self.names = predictor_names(program)
        self.train, self.val = train_and_val(trainset, valset, who="MIPROv2")
        if resume and run_dir is None:
            raise ValueError("resume=True needs the run_dir of the run to continue.")
        # Workers share the run directory on purpose; they coordinate through the study's locks.
        self.session = RunSession(
            RESULT_NAME,
            program,
            opt.metric,
            opt.run_options,
            lm=lm,
            run_dir=run_dir,
            resume=resume,
            max_metric_calls=cfg.max_metric_calls,
            progress_label="MIPROv2",
            shared=True,
        )
        self.task_lm = self.session.lm
        self.proposer_lm = opt.proposer_lm or self.task_lm
        if self.proposer_lm is None:
            raise ConfigurationError(
                "MIPROv2 needs an LM for its proposals: pass lm=... to compile, proposer_lm=... to "
                "MIPROv2, or call promptopt.configure(lm=...)."
            )
        self.rundir = self.session.rundir
        self.resume = resume
        self.events = self.session.events
        self.stoppers = self.session.stoppers
        self.evaluator: CandidateEvaluator = self.session.evaluator  # type: ignore[assignment]
        self.storage = cfg.storage or default_storage(self.rundir.path if self.rundir else None)
        self.files = MiproRunFiles(self.rundir, self.storage, cfg, resume)
        self.fulls = FullEvaluations(self)
        self.minibatch_size = fitted_minibatch_size(
            cfg.minibatch_size, len(self.val), cfg.max_metric_calls, cfg.num_trials
        )
        self._keys: dict[str, str] = {}

    # --- the search space ------------------------------------------------------
    def _prepare(self) -> tuple[SearchSpace, bool]:
        """The study and the search space (loaded, or built and saved); True when loaded."""

        def build() -> SearchSpace:
            self.session.start("mipro", self.opt.config(), False)  # before the preparation's events
            return SearchSpaceBuilder(
                self.opt, self.program, self.train, self.val, self.evaluator, self.proposer_lm, self.events
            ).build()

        self.study, space, resumed = self.files.prepare(
            [e.id for e in self.train], [e.id for e in self.val], self.names, build
        )
        if resumed:
            self.session.start("mipro", self.opt.config(), True)
        return space, resumed

    # --- totals from the shared study --------------------------------------------
    def key(self, params: dict[str, int]) -> str:
        ck = combo_key(params)
        if ck not in self._keys:
            self._keys[ck] = components_key(self.space.components(params))
        return self._keys[ck]

    def sync_records(self, trials: list[FrozenTrial], fulls: dict[str, FullEvaluation]) -> None:
        """Teach the evaluator every score any worker has recorded, so no pair is run twice."""
        rows = [(t.params, t.user_attrs.get("scores", {})) for t in trials]
        rows += [(f.params, f.val_scores) for f in fulls.values()]
        for params, scores in rows:
            key = self.key(params)
            for ex_id, score in scores.items():
                self.evaluator.records.setdefault(f"{key}|{ex_id}", Record(ex_id, score).to_dict())

    def _usage(self, trials: list[FrozenTrial], fulls: dict[str, FullEvaluation]) -> Usage:
        return usage_sum(
            [self.space.usage]
            + [t.user_attrs.get("usage", {}) for t in trials]
            + [f.usage for f in fulls.values()]
        )

    def metric_calls(self, trials: list[FrozenTrial], fulls: dict[str, FullEvaluation]) -> int:
        return (
            self.space.metric_calls
            + sum(int(t.user_attrs.get("metric_calls", 0)) for t in trials)
            + sum(f.metric_calls for f in fulls.values())
        )

    def metric_calls_by_phase(
        self, trials: list[FrozenTrial], fulls: dict[str, FullEvaluation]
    ) -> dict[str, int]:
        return {
            phases.BOOTSTRAP: self.space.bootstrap_calls,
            phases.MINIBATCH: sum(int(t.user_attrs.get("metric_calls", 0)) for t in trials),
            phases.VALIDATION: self.space.metric_calls
            - self.space.bootstrap_calls
            + sum(f.metric_calls for f in fulls.values()),
        }

    def seconds_by_phase(
        self, trials: list[FrozenTrial], fulls: dict[str, FullEvaluation]
    ) -> dict[str, float]:
        """Wall time per phase from what every worker stored: the search space's steps, each
        trial (its minibatch, timed by Optuna) and each full evaluation."""
        clock = PhaseClock(self.space.seconds_by_phase)
        for t in trials:
            if t.datetime_start is not None and t.datetime_complete is not None:
                clock.add(phases.MINIBATCH, (t.datetime_complete - t.datetime_start).total_seconds())
        clock.add(phases.VALIDATION, sum(f.seconds for f in fulls.values()))
        return clock.totals()

    def _progress(self) -> Progress:
        trials, fulls = self.study.completed(), self.study.full_evals()
        usage = self._usage(trials, fulls)
        best, best_at = float("-inf"), 0
        for f in sorted(fulls.values(), key=lambda f: f.order):
            if f.complete(self.val) and f.mean > best:
                best, best_at = f.mean, f.trials_done
        return self.session.progress(
            iteration=len(trials),
            metric_calls=self.metric_calls(trials, fulls),
            best_score=best,
            last_improvement_iteration=best_at,
            usage=usage,
        )

    # --- the run -------------------------------------------------------------------
    def execute(self) -> OptimizationResult:
        try:
            with self.session:
                return self._execute()
        finally:
            study = getattr(self, "study", None)
            if study is not None:
                study.close()  # no heartbeat outlives the run: it would keep a dead trial alive

    def _execute(self) -> OptimizationResult:
        self.space, resumed = self._prepare()
        self._print_estimate(resumed)
        if combo_key(self.space.seed_params()) not in self.study.full_evals():
            self._record_seed()
        reason, finished, ran = self._search()
        mark = self.study.end_mark()
        if not ran and mark is not None and mark["trials_done"] == len(self.study.completed()):
            # A finished run, resumed: its final full evaluation is done, and another would
            # evaluate one more combination (and spend more) every time it is resumed.
            reason = mark["reason"]
        elif finished:
            reason = self._end(reason)
        return self.session.end(self._result(reason))

    def _end(self, reason: str) -> str:
        """The final full evaluation, then the mark that the run ended (with ``reason``)."""
        try:
            basis = self.fulls.step("end")
        except KeyboardInterrupt:
            return "interrupted (Ctrl-C)"
        except ConsecutiveFailuresError as exc:
            return str(exc)  # not marked: a resumed run completes the evaluation and then ends
        self.study.mark_end(reason, basis)
        return reason

    def _record_seed(self) -> None:
        params = self.space.seed_params()
        seed = FullEvaluation(
            params=params,
            val_scores=self.space.seed_scores,
            kind="seed",
            order=0.0,
            metric_calls=0,  # counted in the search space's metric calls
            total_metric_calls=self.space.metric_calls,
        )
        self.study.record_full(combo_key(params), seed)
        self.events.on_val_evaluated({"candidate_id": 0, "score": seed.mean})

    def _search(self) -> tuple[str, bool, int]:
        """Run trials until ``num_trials`` are done or a stopper fires; (reason, finished, trials
        this call completed)."""
        ran = 0
        try:
            # A run killed during a step's full evaluation owes it: due before the next trial,
            # as it was in the run that was killed.
            self.fulls.step("step")
        except KeyboardInterrupt:
            return "interrupted (Ctrl-C)", False, ran
        except ConsecutiveFailuresError as exc:
            return str(exc), False, ran
        while True:
            progress = self._progress()
            reason = first_reason(self.stoppers, progress)
            if reason:
                return reason, False, ran
            budget = self.cfg.max_metric_calls
            if budget is not None and progress.metric_calls + self.minibatch_size + len(self.val) > budget:
                # Keep what the final full evaluation needs: a trial never fully evaluated is wasted,
                # and the returned program is chosen from full evaluations only.
                return f"metric-call budget of {budget} spent (the final full evaluation kept)", True, ran
            try:
                trial = self.study.ask(lambda: first_reason(self.stoppers, self._progress()))
            except KeyboardInterrupt:
                return "interrupted (Ctrl-C)", False, ran
            except StoppedWaitingError as stopped:
                return stopped.reason, False, ran
            if trial is None:
                return f"all {self.cfg.num_trials} trials run", True, ran
            try:
                self._trial(trial)
                ran += 1
                self.fulls.step("step")
            except KeyboardInterrupt:
                self.study.let_go(trial)  # if not yet told: the next ask redoes it
                return "interrupted (Ctrl-C)", False, ran
            except ConsecutiveFailuresError as exc:
                # Like an interrupt: a trial not yet told is redone by the next ask (after resume)
                # under its own number, slot and combination, as if the outage never happened.
                self.study.let_go(trial)
                return str(exc), False, ran
            except BaseException:
                self.study.let_go(trial)  # any other failure: the trial is left to the next worker
                raise
            progress = self._progress()
            self.events.on_iteration_end({"iteration": progress.iteration, "progress": progress})

    def _minibatch(self, slot: int) -> list[Example]:
        # Drawn from the trial's slot alone, so any worker (or a resumed run) draws the same batch,
        # and a trial failed by hand does not shift the batches of the trials after it.
        rng = random.Random(f"{self.cfg.seed}:minibatch:{slot}")
        return rng.sample(self.val, self.minibatch_size)

    def _trial(self, trial: Trial) -> None:
        self.events.on_iteration_start({"iteration": trial.number})
        params = {k: int(v) for k, v in trial.params.items()}
        self.sync_records(self.study.completed(), self.study.full_evals())
        batch = self._minibatch(slot_of(trial))
        before = self.evaluator.metric_calls
        with track_usage() as used:
            recs = run_until_scored(self.evaluator, self.space.components(params), batch)
        unscored = [r for r in recs if not r.scored]
        if unscored:
            # Not told with a mean over fewer examples: Optuna keeps a told value for good, TPE
            # would learn from a number the run without failures never saw, and every later draw
            # (and so a resumed run) would differ. Left untold, the trial is redone on resume.
            last = unscored[-1]
            raise ConsecutiveFailuresError(
                f"stopped: {len(unscored)} example(s) of trial {trial.number} could not be scored in "
                f"{MAX_STALE_ATTEMPTS + 1} runs ({last.failure} failure: {last.error})"
            )
        scores = {r.example_id: r.score for r in recs}
        value = mean(scores)
        attrs = {
            "scores": scores,
            "metric_calls": self.evaluator.metric_calls - before,
            "usage": used.to_dict(),
        }
        if not self.study.tell(trial, value, attrs):
            return  # failed as stale meanwhile: another worker redoes its slot
        self.events.on_minibatch_evaluated(
            {
                "iteration": trial.number,
                "candidate_id": None,
                "example_ids": list(scores),
                "scores": list(scores.values()),
            }
        )
        row = {"number": trial.number, "params": params, "minibatch_score": value, **attrs}
        self.events.on_trial({"trial": {k: v for k, v in row.items() if k != "usage"}})

    # --- output ----------------------------------------------------------------------
    def _print_estimate(self, resumed: bool) -> None:
        if not self.opt.run_options.progress:
            return
        cfg, n_preds = self.cfg, len(self.names)
        done = len(self.study.completed())
        left = max(0, cfg.num_trials - done)
        full_evals = left // cfg.minibatch_full_eval_steps + 1
        task_calls = n_preds * (left * self.minibatch_size + full_evals * len(self.val))
        preparation = ""
        if not resumed:
            teacher = len(self.train) * cfg.max_rounds if cfg.max_bootstrapped_demos else 0
            task_calls += n_preds * (len(self.val) + teacher)
            proposals = n_preds * (cfg.num_candidates - 1)
            summary = (cfg.summary_batches + 1) if cfg.data_aware else 0
            preparation = (
                f" and about {proposals + summary} proposer-LM calls (up to {3 * proposals + summary})"
            )
        sys.stderr.write(
            f"MIPROv2: {'resuming with' if resumed else 'new run,'} {left} of {cfg.num_trials} trials to run "
            f"(minibatch {self.minibatch_size}, full evaluation every {cfg.minibatch_full_eval_steps}); "
            f"at most about {task_calls} task-LM calls{preparation}; {len(self.val)} validation and "
            f"{len(self.train)} training examples, {n_preds} predictor(s).\n"
        )

    def _result(self, reason: str) -> OptimizationResult:
        with self.study.lock():  # the last writer of result.json has seen every trial before it
            trials, fulls = self.study.completed(), self.study.full_evals()
            config = {
                **self.opt.config(),
                "minibatch_size_used": self.minibatch_size,
                "search_space": self.space.param_sizes(),
            }
            found = run_candidates(self.space, self.val, trials, fulls)
            progress = self._progress()
            budget = self.session.budget(
                metric_calls=progress.metric_calls,
                proposer_calls=self.space.proposer_calls,
                usage=self._usage(trials, fulls),
                seconds=progress.seconds,
                metric_calls_by_phase=self.metric_calls_by_phase(trials, fulls),
                seconds_by_phase=self.seconds_by_phase(trials, fulls),
            )
            return self.session.result(
                found.candidates,
                found.best_id,
                budget=budget,
                stop_reason=reason,
                config=config,
                learning_curve=found.learning_curve,
                trials=found.trials,
            )
