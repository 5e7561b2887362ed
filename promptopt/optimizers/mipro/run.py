"""One execution of MIPROv2.compile: prepare (or load) the search space, run trials, pick.

The totals a run reports and stops on — metric calls, tokens, cost, the best
full score — are summed from the saved search space and the shared study, so
every worker (and a resumed run) sees the same numbers.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial, Trial

from promptopt.core import settings
from promptopt.core.example import Example
from promptopt.core.files import file_lock
from promptopt.core.program import ConfigurationError, Program
from promptopt.lm.base import LanguageModel
from promptopt.lm.usage import Usage, track_usage
from promptopt.optimizers.baselines import predictor_names
from promptopt.optimizers.bootstrap import check_dataset
from promptopt.optimizers.callbacks import Dispatcher, EventLog, ProgressLine
from promptopt.optimizers.evaluation import CandidateEvaluator, Record, components_key
from promptopt.optimizers.mipro.engine import MIPROv2, fitted_minibatch_size
from promptopt.optimizers.mipro.report import build_result, mean, usage_sum
from promptopt.optimizers.mipro.search import SharedStudy, combo_key, default_storage, delete_study
from promptopt.optimizers.mipro.space import SpaceBuilder
from promptopt.optimizers.mipro.state import SETUP_FILE, Setup
from promptopt.optimizers.result import OptimizationResult
from promptopt.optimizers.rundir import RunDir
from promptopt.optimizers.stoppers import Progress, first_reason

RUN_FILES = (SETUP_FILE, "result.json", "best_program.json", "events.jsonl", "STOP")


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
        self.program = program
        self.names = predictor_names(program)
        self.train = check_dataset("trainset", trainset, who="MIPROv2")
        self.val = check_dataset("valset", self.train if valset is None else valset, who="MIPROv2")
        self.task_lm = lm or settings.get("lm")
        self.proposer_lm = opt.proposer_lm or self.task_lm
        if self.proposer_lm is None:
            raise ConfigurationError(
                "MIPROv2 needs an LM for its proposals: pass lm=... to compile, proposer_lm=... to "
                "MIPROv2, or call promptopt.configure(lm=...)."
            )
        self.rundir = RunDir(run_dir) if run_dir else None
        if resume and self.rundir is None:
            raise ValueError("resume=True needs the run_dir of the run to continue.")
        self.resume = resume
        self.storage = opt.storage or default_storage(self.rundir.path if self.rundir else None)
        self.minibatch_size = fitted_minibatch_size(
            opt.minibatch_size, len(self.val), opt.max_metric_calls, opt.num_trials
        )
        callbacks = list(opt.callbacks)
        if self.rundir:
            callbacks.append(EventLog(self.rundir.events_file))
        if opt.progress:
            callbacks.append(ProgressLine("MIPROv2", opt.max_metric_calls))
        self.events = Dispatcher(callbacks)
        self.stoppers = opt.stop_options.stoppers(
            max_metric_calls=opt.max_metric_calls, stop_file=self.rundir.stop_file if self.rundir else None
        )
        self.evaluator = CandidateEvaluator(
            program, opt.metric, num_threads=opt.num_threads, failure_score=opt.failure_score, lm=self.task_lm
        )
        self.t0 = time.time()
        self._keys: dict[str, str] = {}

    # --- the search space ------------------------------------------------------
    def _lock_path(self, name: str) -> Path | None:
        return self.rundir.path / name if self.rundir else None

    def _prepare(self) -> tuple[Setup, bool]:
        """Load the saved search space, or build and save it; True when loaded.

        Under the setup lock, so of several workers started together exactly one builds it.
        """
        with file_lock(self._lock_path("setup.lock")):
            if not self.resume:
                for name in RUN_FILES if self.rundir else ():
                    (self.rundir.path / name).unlink(missing_ok=True)  # type: ignore[union-attr]
                if self.storage:
                    delete_study(self.storage, self.opt.study_name)
            setup = Setup.load(self.rundir.path) if self.rundir else None
            if setup is not None:
                self._check_same_run(setup)
                return setup, True
            setup = SpaceBuilder(
                self.opt, self.program, self.train, self.val, self.evaluator, self.proposer_lm, self.events
            ).build()
            if self.rundir:
                setup.save(self.rundir.path)
            return setup, False

    def _check_same_run(self, setup: Setup) -> None:
        where = self.rundir.path if self.rundir else "the storage"
        if setup.train_ids != [e.id for e in self.train] or setup.val_ids != [e.id for e in self.val]:
            raise ValueError(
                f"The run in {where} used other training/validation examples; resume with the same "
                "data, or start a new run directory."
            )
        if setup.predictors != self.names:
            raise ValueError(
                f"The run in {where} optimized predictors {setup.predictors}, this program has "
                f"{self.names}; resume with the same program."
            )

    # --- totals from the shared study --------------------------------------------
    def _key(self, params: dict[str, int]) -> str:
        ck = combo_key(params)
        if ck not in self._keys:
            self._keys[ck] = components_key(self.setup.components(params))
        return self._keys[ck]

    def _sync_records(self, trials: list[FrozenTrial], fulls: dict[str, dict[str, Any]]) -> None:
        """Teach the evaluator every score any worker has recorded, so no pair is run twice."""
        rows = [(t.params, t.user_attrs.get("scores", {})) for t in trials]
        rows += [(f["params"], f["val_scores"]) for f in fulls.values()]
        for params, scores in rows:
            key = self._key(params)
            for ex_id, score in scores.items():
                self.evaluator.records.setdefault(f"{key}|{ex_id}", Record(ex_id, score).to_dict())

    def _usage(self, trials: list[FrozenTrial], fulls: dict[str, dict[str, Any]]) -> Usage:
        return usage_sum(
            [self.setup.usage]
            + [t.user_attrs.get("usage", {}) for t in trials]
            + [f.get("usage", {}) for f in fulls.values()]
        )

    def _metric_calls(self, trials: list[FrozenTrial], fulls: dict[str, dict[str, Any]]) -> int:
        return (
            self.setup.metric_calls
            + sum(int(t.user_attrs.get("metric_calls", 0)) for t in trials)
            + sum(int(f.get("metric_calls", 0)) for f in fulls.values())
        )

    def _progress(self) -> Progress:
        trials, fulls = self.study.completed(), self.study.full_evals()
        usage = self._usage(trials, fulls)
        best, best_at = float("-inf"), 0
        for f in sorted(fulls.values(), key=lambda f: f["order"]):
            score = mean(f["val_scores"])
            if score > best:
                best, best_at = score, f["trials_done"]
        return Progress(
            iteration=len(trials),
            metric_calls=self._metric_calls(trials, fulls),
            lm_calls=usage.calls,
            tokens=usage.total_tokens,
            cost=usage.cost,
            seconds=time.time() - self.t0,
            best_score=best,
            last_improvement_iteration=best_at,
        )

    # --- the run -------------------------------------------------------------------
    def execute(self) -> OptimizationResult:
        self.setup, resumed = self._prepare()
        self.study = SharedStudy(
            self.storage,
            self.opt.study_name,
            seed=self.opt.seed,
            num_trials=self.opt.num_trials,
            sizes=self.setup.param_sizes(),
            lock_path=self._lock_path("search.lock"),
        )
        self.study.reap()
        self._print_estimate(resumed)
        self.events.emit("run_start", optimizer="mipro", config=self.opt.config(), resumed=resumed)
        if combo_key(self.setup.seed_params()) not in self.study.full_evals():
            self._record_seed()
        reason, finished = self._search()
        if finished:
            try:
                self._full_eval_step("end")
            except KeyboardInterrupt:
                reason = "interrupted (Ctrl-C)"
        result = self._result(reason)
        self.events.emit("run_end", result=result)
        return result

    def _record_seed(self) -> None:
        params = self.setup.seed_params()
        data = {
            "params": params,
            "val_scores": self.setup.seed_scores,
            "metric_calls": 0,  # counted in the setup's metric calls
            "usage": {},
            "kind": "seed",
            "after_trial": -1,
            "trials_done": 0,
            "order": 0.0,
            "total_metric_calls": self.setup.metric_calls,
        }
        self.study.record_full(combo_key(params), data)
        self.events.emit("val_evaluated", candidate_id=0, score=mean(self.setup.seed_scores))

    def _search(self) -> tuple[str, bool]:
        """Run trials until ``num_trials`` are done or a stopper fires; (reason, finished)."""
        while True:
            progress = self._progress()
            reason = first_reason(self.stoppers, progress)
            if reason:
                return reason, False
            budget = self.opt.max_metric_calls
            if budget is not None and progress.metric_calls + self.minibatch_size + len(self.val) > budget:
                # Keep what the final full evaluation needs: a trial never fully evaluated is wasted,
                # and the returned program is chosen from full evaluations only.
                return f"metric-call budget of {budget} spent (the final full evaluation kept)", True
            trial = self.study.ask()
            if trial is None:
                return f"all {self.opt.num_trials} trials run", True
            try:
                self._trial(trial)
                self._full_eval_step("step")
            except KeyboardInterrupt:
                self.study.fail(trial)  # if not yet told: failed, so a resumed run redoes it
                return "interrupted (Ctrl-C)", False
            progress = self._progress()
            self.events.emit("iteration_end", iteration=progress.iteration, progress=progress)

    def _minibatch(self, number: int) -> list[Example]:
        # Drawn from the trial number alone, so any worker (or a resumed run) draws the same batch.
        rng = random.Random(f"{self.opt.seed}:minibatch:{number}")
        return rng.sample(self.val, self.minibatch_size)

    def _trial(self, trial: Trial) -> None:
        params = {k: int(v) for k, v in trial.params.items()}
        self._sync_records(self.study.completed(), self.study.full_evals())
        batch = self._minibatch(trial.number)
        before = self.evaluator.metric_calls
        with track_usage() as used:
            recs = self.evaluator.run(self.setup.components(params), batch)
        scores = {r.example_id: r.score for r in recs}
        value = mean(scores)
        attrs = {
            "scores": scores,
            "metric_calls": self.evaluator.metric_calls - before,
            "usage": used.to_dict(),
        }
        self.study.tell(trial, value, attrs)
        self.events.emit(
            "minibatch_evaluated",
            iteration=trial.number,
            candidate_id=None,
            example_ids=list(scores),
            scores=list(scores.values()),
        )
        row = {"number": trial.number, "params": params, "minibatch_score": value, **attrs}
        self.events.emit("trial", trial={k: v for k, v in row.items() if k != "usage"})

    def _full_eval_step(self, kind: str) -> None:
        """Fully evaluate the best-by-minibatch combination not yet fully evaluated, when due.

        ``step`` evaluations are due once per ``minibatch_full_eval_steps`` completed trials
        (counted over all workers); the ``end`` one whenever trials are exhausted.
        """
        with self.study.lock():
            trials = self.study.completed()
            self._record_covered(trials, self.study.full_evals())
            fulls = self.study.full_evals()
            if kind == "step" and len(trials) // self.opt.minibatch_full_eval_steps <= self._steps_done(
                fulls
            ):
                return
            pick = self._best_unevaluated(trials, fulls)
            if pick is None or not self.study.claim(pick, kind):
                return
        params = next(t.params for t in trials if combo_key(t.params) == pick)
        try:
            self._sync_records(trials, fulls)
            before = self.evaluator.metric_calls
            with track_usage() as used:
                recs = self.evaluator.run(self.setup.components(params), self.val)
        except BaseException:
            self.study.release(pick)
            raise
        spent = self.evaluator.metric_calls - before
        scores = {r.example_id: r.score for r in recs}
        self._save_full(pick, params, scores, spent, used.to_dict(), kind, trials)

    def _steps_done(self, fulls: dict[str, dict[str, Any]]) -> int:
        """Step evaluations done or in progress (by live workers)."""
        done = sum(1 for f in fulls.values() if f.get("kind") == "step")
        claims = self.study.claims()
        return done + sum(
            1
            for k, c in claims.items()
            if c.get("kind") == "step" and k not in fulls and self.study.claimed(k)
        )

    def _save_full(
        self,
        key: str,
        params: dict[str, Any],
        scores: dict[str, float],
        spent: int,
        usage: dict[str, Any],
        kind: str,
        trials: list[FrozenTrial],
    ) -> None:
        with self.study.lock():
            now_trials, fulls = self.study.completed(), self.study.full_evals()
            data = {
                "params": {k: int(v) for k, v in params.items()},
                "val_scores": scores,
                "metric_calls": spent,
                "usage": usage,
                "kind": kind,
                "after_trial": max((t.number for t in trials), default=-1),
                "trials_done": len(now_trials),
                "order": time.time(),
                "total_metric_calls": self._metric_calls(now_trials, fulls) + spent,
            }
            self.study.record_full(key, data)
        self.events.emit("val_evaluated", candidate_id=None, score=mean(scores), params=data["params"])

    def _record_covered(self, trials: list[FrozenTrial], fulls: dict[str, dict[str, Any]]) -> None:
        """Combinations whose trials already scored every validation example are fully evaluated
        for free (when minibatches are as large as the validation set)."""
        seen: dict[str, dict[str, float]] = {}
        params_of: dict[str, dict[str, Any]] = {}
        for t in trials:
            k = combo_key(t.params)
            seen.setdefault(k, {}).update(t.user_attrs.get("scores", {}))
            params_of.setdefault(k, t.params)
        for k, scores in seen.items():
            if k in fulls or self.study.claimed(k) or any(e.id not in scores for e in self.val):
                continue
            ordered = {e.id: scores[e.id] for e in self.val}
            self._save_full(k, params_of[k], ordered, 0, {}, "covered", trials)

    def _best_unevaluated(self, trials: list[FrozenTrial], fulls: dict[str, dict[str, Any]]) -> str | None:
        """The combination with the best mean minibatch score (over the distinct examples its trials
        scored) that is neither fully evaluated nor being evaluated by a live worker."""
        stats: dict[str, tuple[dict[str, float], int]] = {}
        for t in trials:
            k = combo_key(t.params)
            scores, first = stats.get(k, ({}, t.number))
            scores.update(t.user_attrs.get("scores", {}))
            stats[k] = (scores, first)
        ranked = sorted(stats.items(), key=lambda kv: (-mean(kv[1][0]), -len(kv[1][0]), kv[1][1]))
        for k, _ in ranked:
            if k not in fulls and not self.study.claimed(k):
                return k
        return None

    # --- output ----------------------------------------------------------------------
    def _print_estimate(self, resumed: bool) -> None:
        if not self.opt.progress:
            return
        opt, n_preds = self.opt, len(self.names)
        done = len(self.study.completed())
        left = max(0, opt.num_trials - done)
        full_evals = left // opt.minibatch_full_eval_steps + 1
        task_calls = n_preds * (left * self.minibatch_size + full_evals * len(self.val))
        setup = ""
        if not resumed:
            teacher = len(self.train) * opt.max_rounds if opt.max_bootstrapped_demos else 0
            task_calls += n_preds * (len(self.val) + teacher)
            proposals = n_preds * (opt.num_candidates - 1)
            summary = (opt.summary_batches + 1) if opt.data_aware else 0
            setup = f" and about {proposals + summary} proposer-LM calls (up to {3 * proposals + summary})"
        sys.stderr.write(
            f"MIPROv2: {'resuming with' if resumed else 'new run,'} {left} of {opt.num_trials} trials to run "
            f"(minibatch {self.minibatch_size}, full evaluation every {opt.minibatch_full_eval_steps}); "
            f"at most about {task_calls} task-LM calls{setup}; {len(self.val)} validation and "
            f"{len(self.train)} training examples, {n_preds} predictor(s).\n"
        )

    def _result(self, reason: str) -> OptimizationResult:
        with self.study.lock():  # the last writer of result.json has seen every trial before it
            trials, fulls = self.study.completed(), self.study.full_evals()
            config = {
                **self.opt.config(),
                "minibatch_size_used": self.minibatch_size,
                "search_space": self.setup.param_sizes(),
            }
            result = build_result(
                self.setup,
                self.val,
                trials,
                fulls,
                self._progress(),
                self._usage(trials, fulls),
                reason,
                config,
            )
            result.best_program = result.program_for(self.program)
            if self.rundir:
                result.save(self.rundir.path / "result.json")
                result.best_program.save(self.rundir.path / "best_program.json")
        return result
