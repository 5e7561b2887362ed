"""MIPROv2's full evaluations: which combination is scored on the whole validation set and when,
shared by every worker through the study (claims, records and the run's end)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from optuna.trial import FrozenTrial

from promptopt.lm.usage import track_usage
from promptopt.optimizers.mipro.candidates import mean, usage_sum
from promptopt.optimizers.mipro.full_evaluation import FullEvaluation
from promptopt.optimizers.mipro.retries import run_until_scored
from promptopt.optimizers.mipro.search import combo_key
from promptopt.optimizers.stoppers import ConsecutiveFailuresError

if TYPE_CHECKING:
    from promptopt.optimizers.mipro.run import MIPRORun


class FullEvaluations:
    """The full evaluations of one run (a worker's view of the shared study)."""

    def __init__(self, run: MIPRORun) -> None:
        self.run = run

    def step(self, kind: str) -> int:
        """Fully evaluate the best-by-minibatch combination not yet fully evaluated, when due;
        returns how many completed trials it looked at.

        ``step`` evaluations are due once per ``minibatch_full_eval_steps`` completed trials
        (counted over all workers); the ``end`` one whenever trials are exhausted, once for the
        same completed trials (a run killed after it, or a second worker ending, adds none).
        """
        self._complete_fulls()
        with self.run.study.lock():
            trials = self.run.study.completed()
            self._record_covered(trials, self.run.study.full_evals())
            fulls = self.run.study.full_evals()
            if kind == "step" and len(trials) // self.run.cfg.minibatch_full_eval_steps <= self._steps_done(
                fulls
            ):
                return len(trials)
            if kind == "end" and self._ended(len(trials), fulls):
                return len(trials)
            pick = self._best_unevaluated(trials, fulls)
            if pick is None or not self.run.study.claim(pick, kind, len(trials)):
                return len(trials)
        params = next(t.params for t in trials if combo_key(t.params) == pick)
        comps = self.run.space.components(params)
        stopped: ConsecutiveFailuresError | None = None
        try:
            self.run.sync_records(trials, fulls)
            before, started = self.run.evaluator.metric_calls, time.perf_counter()
            with track_usage() as used:
                try:
                    run_until_scored(self.run.evaluator, comps, self.run.val)
                except ConsecutiveFailuresError as exc:
                    stopped = exc
            scores = self.run.evaluator.scored(comps, self.run.val)
            if not scores:
                raise stopped or ConsecutiveFailuresError("stopped: no validation example could be scored")
        except BaseException:
            self.run.study.release(pick)
            raise
        # Saved with what was scored (the calls are spent) and completed by _complete_fulls.
        spent, seconds = self.run.evaluator.metric_calls - before, time.perf_counter() - started
        self._save_full(pick, params, scores, spent, used.to_dict(), kind, trials, seconds)
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
        with self.run.study.lock():
            fulls = self.run.study.full_evals()
            for key, f in sorted(fulls.items(), key=lambda kv: kv[1].order):
                if f.complete(self.run.val):
                    continue
                self.run.sync_records(self.run.study.completed(), fulls)
                comps = self.run.space.components(f.params)
                before, started = self.run.evaluator.metric_calls, time.perf_counter()
                stopped: ConsecutiveFailuresError | None = None
                with track_usage() as used:
                    try:
                        run_until_scored(self.run.evaluator, comps, self.run.val)
                    except ConsecutiveFailuresError as exc:
                        stopped = exc
                spent = self.run.evaluator.metric_calls - before
                if spent:
                    done = f.completed_with(
                        self.run.evaluator.scored(comps, self.run.val),
                        spent,
                        usage_sum([f.usage, used.to_dict()]).to_dict(),
                        time.perf_counter() - started,
                    )
                    self.run.study.record_full(key, done)
                    self.run.events.on_val_evaluated(
                        {"candidate_id": None, "score": done.mean, "params": f.params}
                    )
                if stopped is not None:
                    raise stopped

    def _ended(self, basis: int, fulls: dict[str, FullEvaluation]) -> bool:
        """Whether the end evaluation after ``basis`` completed trials is done or under way."""
        if any(f.kind == "end" and f.basis == basis for f in fulls.values()):
            return True
        return any(
            c.get("kind") == "end"
            and c.get("basis") == basis
            and k not in fulls
            and self.run.study.claimed(k)
            for k, c in self.run.study.claims().items()
        )

    def _steps_done(self, fulls: dict[str, FullEvaluation]) -> int:
        """Step evaluations done or in progress (by live workers)."""
        done = sum(1 for f in fulls.values() if f.kind == "step")
        claims = self.run.study.claims()
        return done + sum(
            1
            for k, c in claims.items()
            if c.get("kind") == "step" and k not in fulls and self.run.study.claimed(k)
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
        seconds: float,
    ) -> None:
        with self.run.study.lock():
            now_trials, fulls = self.run.study.completed(), self.run.study.full_evals()
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
                total_metric_calls=self.run.metric_calls(now_trials, fulls) + spent,
                seconds=seconds,
            )
            self.run.study.record_full(key, full)
        self.run.events.on_val_evaluated({"candidate_id": None, "score": full.mean, "params": full.params})

    def _record_covered(self, trials: list[FrozenTrial], fulls: dict[str, FullEvaluation]) -> None:
        """Programs whose trials already scored every validation example are fully evaluated
        for free (when minibatches are as large as the validation set)."""
        done = {self.run.key(f.params) for f in fulls.values()}
        seen: dict[str, tuple[dict[str, float], str, dict[str, Any]]] = {}
        for t in trials:
            scores = seen.setdefault(self.run.key(t.params), ({}, combo_key(t.params), t.params))[0]
            scores.update(t.user_attrs.get("scores", {}))
        for prog, (scores, k, params) in seen.items():
            if prog in done or self.run.study.claimed(k) or any(e.id not in scores for e in self.run.val):
                continue
            ordered = {e.id: scores[e.id] for e in self.run.val}
            self._save_full(k, params, ordered, 0, {}, "covered", trials, 0.0)

    def _best_unevaluated(self, trials: list[FrozenTrial], fulls: dict[str, FullEvaluation]) -> str | None:
        """The program with the best mean minibatch score (over the distinct examples its trials
        scored) that is neither fully evaluated nor being evaluated by a live worker, as the
        combination of its first trial.

        Combinations that make the same program (two demo sets can hold the same demos) are one
        program: evaluating the second would add a duplicate candidate and no information.
        """
        done = {self.run.key(f.params) for f in fulls.values()}
        stats: dict[str, tuple[dict[str, float], int, str]] = {}
        for t in trials:
            scores = stats.setdefault(self.run.key(t.params), ({}, t.number, combo_key(t.params)))[0]
            scores.update(t.user_attrs.get("scores", {}))
        ranked = sorted(stats.items(), key=lambda kv: (-mean(kv[1][0]), -len(kv[1][0]), kv[1][1]))
        for prog, (_, _, k) in ranked:
            if prog not in done and not self.run.study.claimed(k):
                return k
        return None
