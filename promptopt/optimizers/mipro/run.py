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
from typing import TYPE_CHECKING, Any

import sqlalchemy.exc
from optuna.trial import FrozenTrial, Trial

from promptopt.core.example import Example
from promptopt.core.program import ConfigurationError, Program
from promptopt.io import file_lock
from promptopt.lm.usage import Usage, track_usage
from promptopt.lm_protocol import LanguageModel
from promptopt.optimizers.components import predictor_names
from promptopt.optimizers.datasets import train_and_val
from promptopt.optimizers.evaluation import CandidateEvaluator, Record, components_key
from promptopt.optimizers.mipro.candidates import mean, run_candidates, usage_sum
from promptopt.optimizers.mipro.full_evaluation import FullEvaluation
from promptopt.optimizers.mipro.search import (
    SharedStudy,
    combo_key,
    default_storage,
    delete_study,
    fitted_minibatch_size,
    redacted_url,
    slot_of,
    sqlite_file,
)
from promptopt.optimizers.mipro.search_space import (
    LEGACY_SEARCH_SPACE_FILE,
    SEARCH_SPACE_FILE,
    DamagedRunError,
    SearchSpace,
    damaged,
)
from promptopt.optimizers.mipro.search_space_builder import (
    MAX_STALE_ATTEMPTS,
    SearchSpaceBuilder,
    run_until_scored,
)
from promptopt.optimizers.result import OptimizationResult
from promptopt.optimizers.session import RunSession
from promptopt.optimizers.stoppers import ConsecutiveFailuresError, Progress, first_reason

if TYPE_CHECKING:
    from promptopt.optimizers.mipro.engine import MIPROv2

RESULT_NAME = "promptopt.MIPROv2"
RUN_FILES = (
    SEARCH_SPACE_FILE,
    LEGACY_SEARCH_SPACE_FILE,
    "result.json",
    "best_program.json",
    "events.jsonl",
    "STOP",
)
# What a run directory holds once a run has got past its study's creation (events.jsonl may be
# older: it logs the preparation too).
STATE_FILES = (SEARCH_SPACE_FILE, "result.json", "best_program.json")
DB_FILE = "optuna.db"


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
        self.minibatch_size = fitted_minibatch_size(
            cfg.minibatch_size, len(self.val), cfg.max_metric_calls, cfg.num_trials
        )
        self._keys: dict[str, str] = {}

    # --- the search space ------------------------------------------------------
    def _lock_path(self, name: str) -> Path | None:
        return self.rundir.path / name if self.rundir else None

    def _prepare(self) -> tuple[SearchSpace, bool]:
        """Open the study; load the saved search space, or build and save it; True when loaded.

        Under the search space's lock, so of several workers started together exactly one builds it.
        The study is created before the search space is saved, so a run directory with a
        ``search_space.json`` always has its study: a study that is missing, empty or unreadable then
        is damage, and so is a study with trials but no search space. Either stops the run with a
        :class:`DamagedRunError`, rather than running every trial again over what was there.
        """
        with file_lock(self._lock_path("search_space.lock")):
            if not self.resume:
                self._discard()
            space = SearchSpace.load(self.rundir.path) if self.rundir else None
            self._check_db_file()
            self.study, (n_trials, n_fulls) = self._open_study()
            resumed = space is not None
            if space is not None:
                self._check_same_run(space)
                self.session.start("mipro", self.opt.config(), resumed)
            elif n_trials or n_fulls:
                raise damaged(
                    self.rundir.path / SEARCH_SPACE_FILE if self.rundir else "The search space",
                    f"missing, while {self._storage_name()} holds {n_trials} trial(s) and {n_fulls} "
                    "full evaluation(s) of a run, which index into that search space",
                    self._advice_dir(),
                )
            else:
                self.session.start("mipro", self.opt.config(), resumed)  # before the preparation's events
                space = SearchSpaceBuilder(
                    self.opt,
                    self.program,
                    self.train,
                    self.val,
                    self.evaluator,
                    self.proposer_lm,
                    self.events,
                ).build()
                if self.rundir:
                    space.save(self.rundir.path)
            self.study.set_space(space.param_sizes())
            return space, resumed

    def _advice_dir(self) -> Path | None:
        """The folder a damaged run is started over from: the run directory, when it holds the
        study too (a storage of the caller's choosing must be seen to by the caller)."""
        return self.rundir.path if self.rundir and self.cfg.storage is None else None

    def _storage_name(self) -> str:
        return str(sqlite_file(self.storage) or f"the Optuna storage {redacted_url(self.storage)}")

    def _discard(self) -> None:
        """A fresh run: remove what an earlier run left (a damaged file too, unread)."""
        if self.rundir:
            for name in RUN_FILES:
                (self.rundir.path / name).unlink(missing_ok=True)
        if self.rundir and self.cfg.storage is None:
            for suffix in ("", "-journal", "-wal", "-shm"):
                (self.rundir.path / (DB_FILE + suffix)).unlink(missing_ok=True)
        elif self.storage:
            try:
                delete_study(self.storage, self.cfg.study_name)
            except Exception as exc:
                if (err := self._unreadable_storage(exc)) is exc:
                    raise
                raise err from exc

    def _check_db_file(self) -> None:
        """SQLite takes a zero-byte (or missing) file for a new database: with the run's other
        files there, resuming from it would run every trial again as if none had run."""
        path = sqlite_file(self.storage)
        if path is None or self.rundir is None or (path.is_file() and path.stat().st_size > 0):
            return
        if not path.exists() and self.cfg.storage is not None:
            return  # a storage of the caller's choosing may be new to this run directory
        held = [name for name in STATE_FILES if (self.rundir.path / name).exists()]
        if held:
            what = "empty (0 bytes)" if path.exists() else "missing"
            raise damaged(
                path,
                f"{what}, while {self.rundir.path} holds this run's {', '.join(held)}: the trials and "
                "full evaluations the run recorded are gone",
                self._advice_dir(),
            )

    def _open_study(self) -> tuple[SharedStudy, tuple[int, int]]:
        """The shared study, read through once: (study, (trials, full evaluations))."""
        try:
            study = SharedStudy(
                self.storage,
                self.cfg.study_name,
                seed=self.cfg.seed,
                num_trials=self.cfg.num_trials,
                lock_path=self._lock_path("search.lock"),
            )
            return study, study.contents()
        except Exception as exc:
            if (err := self._unreadable_storage(exc)) is exc:
                raise
            raise err from exc

    def _unreadable_storage(self, exc: Exception) -> Exception:
        """``exc`` as a :class:`DamagedRunError` when it says a SQLite study file is damaged."""
        if isinstance(exc, DamagedRunError) or sqlite_file(self.storage) is None or not _unreadable(exc):
            return exc
        return damaged(
            self._storage_name(), f"not a readable Optuna database ({_brief(exc)})", self._advice_dir()
        )

    def _check_same_run(self, space: SearchSpace) -> None:
        where = self.rundir.path if self.rundir else "the storage"
        if space.train_ids != [e.id for e in self.train] or space.val_ids != [e.id for e in self.val]:
            raise ValueError(
                f"The run in {where} used other training/validation examples; resume with the same "
                "data, or start a new run directory."
            )
        if space.predictors != self.names:
            raise ValueError(
                f"The run in {where} optimized predictors {space.predictors}, this program has "
                f"{self.names}; resume with the same program."
            )

    # --- totals from the shared study --------------------------------------------
    def _key(self, params: dict[str, int]) -> str:
        ck = combo_key(params)
        if ck not in self._keys:
            self._keys[ck] = components_key(self.space.components(params))
        return self._keys[ck]

    def _sync_records(self, trials: list[FrozenTrial], fulls: dict[str, FullEvaluation]) -> None:
        """Teach the evaluator every score any worker has recorded, so no pair is run twice."""
        rows = [(t.params, t.user_attrs.get("scores", {})) for t in trials]
        rows += [(f.params, f.val_scores) for f in fulls.values()]
        for params, scores in rows:
            key = self._key(params)
            for ex_id, score in scores.items():
                self.evaluator.records.setdefault(f"{key}|{ex_id}", Record(ex_id, score).to_dict())

    def _usage(self, trials: list[FrozenTrial], fulls: dict[str, FullEvaluation]) -> Usage:
        return usage_sum(
            [self.space.usage]
            + [t.user_attrs.get("usage", {}) for t in trials]
            + [f.usage for f in fulls.values()]
        )

    def _metric_calls(self, trials: list[FrozenTrial], fulls: dict[str, FullEvaluation]) -> int:
        return (
            self.space.metric_calls
            + sum(int(t.user_attrs.get("metric_calls", 0)) for t in trials)
            + sum(f.metric_calls for f in fulls.values())
        )

    def _progress(self) -> Progress:
        trials, fulls = self.study.completed(), self.study.full_evals()
        usage = self._usage(trials, fulls)
        best, best_at = float("-inf"), 0
        for f in sorted(fulls.values(), key=lambda f: f.order):
            if f.complete(self.val) and f.mean > best:
                best, best_at = f.mean, f.trials_done
        return self.session.progress(
            iteration=len(trials),
            metric_calls=self._metric_calls(trials, fulls),
            best_score=best,
            last_improvement_iteration=best_at,
            usage=usage,
        )

    # --- the run -------------------------------------------------------------------
    def execute(self) -> OptimizationResult:
        with self.session:
            return self._execute()

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
            basis = self._full_eval_step("end")
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
            self._full_eval_step("step")
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
            trial = self.study.ask()
            if trial is None:
                return f"all {self.cfg.num_trials} trials run", True, ran
            try:
                self._trial(trial)
                ran += 1
                self._full_eval_step("step")
            except KeyboardInterrupt:
                self.study.let_go(trial)  # if not yet told: the next ask redoes it
                return "interrupted (Ctrl-C)", False, ran
            except ConsecutiveFailuresError as exc:
                # Like an interrupt: a trial not yet told is redone by the next ask (after resume)
                # under its own number, slot and combination, as if the outage never happened.
                self.study.let_go(trial)
                return str(exc), False, ran
            progress = self._progress()
            self.events.on_iteration_end({"iteration": progress.iteration, "progress": progress})

    def _minibatch(self, slot: int) -> list[Example]:
        # Drawn from the trial's slot alone, so any worker (or a resumed run) draws the same batch,
        # and a trial failed by hand does not shift the batches of the trials after it.
        rng = random.Random(f"{self.cfg.seed}:minibatch:{slot}")
        return rng.sample(self.val, self.minibatch_size)

    def _trial(self, trial: Trial) -> None:
        params = {k: int(v) for k, v in trial.params.items()}
        self._sync_records(self.study.completed(), self.study.full_evals())
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
        self.study.tell(trial, value, attrs)
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

    def _full_eval_step(self, kind: str) -> int:
        """Fully evaluate the best-by-minibatch combination not yet fully evaluated, when due;
        returns how many completed trials it looked at.

        ``step`` evaluations are due once per ``minibatch_full_eval_steps`` completed trials
        (counted over all workers); the ``end`` one whenever trials are exhausted, once for the
        same completed trials (a run killed after it, or a second worker ending, adds none).
        """
        self._complete_fulls()
        with self.study.lock():
            trials = self.study.completed()
            self._record_covered(trials, self.study.full_evals())
            fulls = self.study.full_evals()
            if kind == "step" and len(trials) // self.cfg.minibatch_full_eval_steps <= self._steps_done(
                fulls
            ):
                return len(trials)
            if kind == "end" and self._ended(len(trials), fulls):
                return len(trials)
            pick = self._best_unevaluated(trials, fulls)
            if pick is None or not self.study.claim(pick, kind, len(trials)):
                return len(trials)
        params = next(t.params for t in trials if combo_key(t.params) == pick)
        comps = self.space.components(params)
        stopped: ConsecutiveFailuresError | None = None
        try:
            self._sync_records(trials, fulls)
            before = self.evaluator.metric_calls
            with track_usage() as used:
                try:
                    run_until_scored(self.evaluator, comps, self.val)
                except ConsecutiveFailuresError as exc:
                    stopped = exc
            scores = self.evaluator.scored(comps, self.val)
            if not scores:
                raise stopped or ConsecutiveFailuresError("stopped: no validation example could be scored")
        except BaseException:
            self.study.release(pick)
            raise
        # Saved with what was scored (the calls are spent) and completed by _complete_fulls.
        spent = self.evaluator.metric_calls - before
        self._save_full(pick, params, scores, spent, used.to_dict(), kind, trials)
        if stopped is not None:
            raise stopped
        return len(trials)

    def _complete_fulls(self) -> None:
        """Score the validation examples a full evaluation was saved without (an outage stopped
        it, or they kept failing), oldest first: until then it cannot be chosen.

        Under the run's lock for the whole evaluation, so two workers never complete the same one
        and count its calls twice; it is needed only after failures. The record's totals become
        those of an evaluation done in one go.
        """
        with self.study.lock():
            fulls = self.study.full_evals()
            for key, f in sorted(fulls.items(), key=lambda kv: kv[1].order):
                if f.complete(self.val):
                    continue
                self._sync_records(self.study.completed(), fulls)
                comps = self.space.components(f.params)
                before = self.evaluator.metric_calls
                stopped: ConsecutiveFailuresError | None = None
                with track_usage() as used:
                    try:
                        run_until_scored(self.evaluator, comps, self.val)
                    except ConsecutiveFailuresError as exc:
                        stopped = exc
                spent = self.evaluator.metric_calls - before
                if spent:
                    done = f.completed_with(
                        self.evaluator.scored(comps, self.val),
                        spent,
                        usage_sum([f.usage, used.to_dict()]).to_dict(),
                    )
                    self.study.record_full(key, done)
                    self.events.on_val_evaluated(
                        {"candidate_id": None, "score": done.mean, "params": f.params}
                    )
                if stopped is not None:
                    raise stopped

    def _ended(self, basis: int, fulls: dict[str, FullEvaluation]) -> bool:
        """Whether the end evaluation after ``basis`` completed trials is done or under way."""
        if any(f.kind == "end" and f.basis == basis for f in fulls.values()):
            return True
        return any(
            c.get("kind") == "end" and c.get("basis") == basis and k not in fulls and self.study.claimed(k)
            for k, c in self.study.claims().items()
        )

    def _steps_done(self, fulls: dict[str, FullEvaluation]) -> int:
        """Step evaluations done or in progress (by live workers)."""
        done = sum(1 for f in fulls.values() if f.kind == "step")
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
            full = FullEvaluation(
                params={k: int(v) for k, v in params.items()},
                val_scores=scores,
                kind=kind,
                # A count, not a clock: candidates are listed in this order, and a resumed run must
                # list them as the uninterrupted run did (earlier runs' clock values sort first).
                order=max((f.order for f in fulls.values()), default=0.0) + 1,
                metric_calls=spent,
                usage=usage,
                after_trial=max((t.number for t in trials), default=-1),
                basis=len(trials),
                trials_done=len(now_trials),
                total_metric_calls=self._metric_calls(now_trials, fulls) + spent,
            )
            self.study.record_full(key, full)
        self.events.on_val_evaluated({"candidate_id": None, "score": full.mean, "params": full.params})

    def _record_covered(self, trials: list[FrozenTrial], fulls: dict[str, FullEvaluation]) -> None:
        """Programs whose trials already scored every validation example are fully evaluated
        for free (when minibatches are as large as the validation set)."""
        done = {self._key(f.params) for f in fulls.values()}
        seen: dict[str, tuple[dict[str, float], str, dict[str, Any]]] = {}
        for t in trials:
            scores = seen.setdefault(self._key(t.params), ({}, combo_key(t.params), t.params))[0]
            scores.update(t.user_attrs.get("scores", {}))
        for prog, (scores, k, params) in seen.items():
            if prog in done or self.study.claimed(k) or any(e.id not in scores for e in self.val):
                continue
            ordered = {e.id: scores[e.id] for e in self.val}
            self._save_full(k, params, ordered, 0, {}, "covered", trials)

    def _best_unevaluated(self, trials: list[FrozenTrial], fulls: dict[str, FullEvaluation]) -> str | None:
        """The program with the best mean minibatch score (over the distinct examples its trials
        scored) that is neither fully evaluated nor being evaluated by a live worker, as the
        combination of its first trial.

        Combinations that make the same program (two demo sets can hold the same demos) are one
        program: evaluating the second would add a duplicate candidate and no information.
        """
        done = {self._key(f.params) for f in fulls.values()}
        stats: dict[str, tuple[dict[str, float], int, str]] = {}
        for t in trials:
            scores = stats.setdefault(self._key(t.params), ({}, t.number, combo_key(t.params)))[0]
            scores.update(t.user_attrs.get("scores", {}))
        ranked = sorted(stats.items(), key=lambda kv: (-mean(kv[1][0]), -len(kv[1][0]), kv[1][1]))
        for prog, (_, _, k) in ranked:
            if prog not in done and not self.study.claimed(k):
                return k
        return None

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


def _unreadable(exc: BaseException) -> bool:
    """Whether reading a SQLite storage failed on its contents (not on a lock or a missing folder)."""
    if isinstance(exc, sqlalchemy.exc.OperationalError):
        text = str(exc).lower()
        return "malformed" in text or "not a database" in text
    return isinstance(
        exc, (sqlalchemy.exc.DatabaseError, ValueError, TypeError, KeyError, UnicodeDecodeError)
    )


def _brief(exc: BaseException) -> str:
    """The database's own words, without SQLAlchemy's statement and help link."""
    inner = getattr(exc, "orig", None) or exc
    return f"{type(inner).__name__}: {str(inner).splitlines()[0] if str(inner) else ''}".rstrip(": ")
