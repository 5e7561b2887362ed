"""GEPA: reflective Pareto evolution of a program's components (Agrawal et al., 2025).

One iteration: pick a parent from the per-example Pareto front, run it on a
training minibatch with traces, pick the component to change (round-robin),
propose a new value (a reflected instruction, or a new demo set drawn from
successful traces), score the child on the same minibatch, and keep it only if
it does better; kept children are scored on the validation set and join the
front. When enabled, merges of front candidates that changed different
components are tried after each success.

State is saved atomically after every iteration; ``resume=True`` continues a
killed run with the same decisions and the same final result.

Examples the LM or the metric failed on are not scores: a candidate's
``val_scores`` leave them out, every comparison (minibatch acceptance, ties,
merges, the Pareto front, the best candidate) looks only at examples both
sides were scored on, and missing validation scores are filled in before each
iteration, which is how a resumed run scores what an outage left unscored.
After ``max_consecutive_failures`` failures in a row the run stops with the
cause as its stop reason; it is not finished, so ``resume=True`` continues it.
"""

from __future__ import annotations

import functools
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from promptopt.core import settings
from promptopt.core.example import Example
from promptopt.core.program import Program
from promptopt.evaluate import is_lm_failure
from promptopt.lm.usage import Usage, track_usage
from promptopt.lm_protocol import LanguageModel
from promptopt.optimizers.bootstrap import check_dataset
from promptopt.optimizers.callbacks import Callback, Dispatcher, EventLog, ProgressLine
from promptopt.optimizers.evaluation import CandidateEvaluator, Record, scores_of
from promptopt.optimizers.gepa import pareto
from promptopt.optimizers.gepa.adaptive import auto_proposer, rewrite_or_rules
from promptopt.optimizers.gepa.demos import DemoPool
from promptopt.optimizers.gepa.merge import find_merge
from promptopt.optimizers.gepa.reflection import (
    Proposal,
    ProposalRequest,
    Proposer,
    RewriteProposer,
    RulesProposer,
    reflective_dataset,
)
from promptopt.optimizers.gepa.state import GEPAState, rng_from_json, rng_to_json
from promptopt.optimizers.result import (
    Budget,
    Candidate,
    OptimizationResult,
    best_candidate,
    compare_on_common,
    serialize_components,
)
from promptopt.optimizers.rundir import DamagedStateError, RunDir
from promptopt.optimizers.stoppers import (
    DEFAULT_MAX_CONSECUTIVE_FAILURES,
    ConsecutiveFailuresError,
    FailureStreak,
    MaxConsecutiveFailures,
    Progress,
    StopOptions,
    Stopper,
    first_reason,
)

log = logging.getLogger("promptopt.gepa")

AUTO_CANDIDATES = {"light": 6, "medium": 12, "heavy": 18}


def auto_budget(level: str, n_val: int, minibatch_size: int) -> int:
    """Metric calls for ``auto``: the seed and ~N accepted candidates on the validation set,
    plus ~3 proposals per accepted one, each costing two minibatch runs."""
    if level not in AUTO_CANDIDATES:
        raise ValueError(f"auto must be one of {sorted(AUTO_CANDIDATES)}, not {level!r}.")
    n = AUTO_CANDIDATES[level]
    return n_val * (n + 1) + 3 * n * 2 * minibatch_size


def default_reflection_lm() -> LanguageModel:
    """The larger local model when its files are installed, else the default local model."""
    from promptopt.lm.client import LM
    from promptopt.lm.local import LARGE_MODEL, LocalModelError, get_model, models_dir, part_files

    try:
        if not (models_dir() / f"{LARGE_MODEL}.gguf").exists():
            part_files(get_model(LARGE_MODEL))
        return LM(f"local/{LARGE_MODEL}", temperature=0.7, max_tokens=700)
    except LocalModelError:
        return LM("local", temperature=0.7, max_tokens=700)


class GEPA:
    """Reflective Pareto evolution of instructions (and, optionally, demos).

    Args:
        metric: ``metric(example, prediction, trace) -> float | Score``; feedback text drives reflection.
        auto: ``"light" | "medium" | "heavy"`` budget preset (or give ``max_metric_calls``).
        max_metric_calls: the budget, in (candidate, example) evaluations.
        reflection_lm: the LM that proposes instructions (default: the larger local model when
            installed, else the local model).
        proposer: ``"auto"`` (for local reflectors ``"adaptive"``, rewrites otherwise), ``"rewrite"``,
            ``"rules"``, ``"adaptive"`` (rewrites and rules, chosen by how their children fare), or
            any callable ``(ProposalRequest, lm) -> Proposal``; one with ``observe(improved)``,
            ``state_dict()`` and ``load_state_dict(d)`` hears each outcome and keeps its state in
            the run state.
        component_selector: ``"round_robin"`` (one component per iteration) or ``"all"``.
        evolve_demos: also evolve each predictor's demos from successful training traces.
        max_demos: the most demos per predictor when evolving them; a demo mutation grows a list
            toward this or swaps part of it (see :meth:`DemoPool.propose`).
        max_demo_chars: the most characters of demo field values per predictor, so demos of
            long-input tasks cannot overflow a small model's context.
        demo_threshold: the score a training run needs for its trace to become a demo.
        labeled_demos: also draw demos from training examples that hold a predictor's fields.
        use_merge, max_merge_invocations, merge_subsample: system-aware merge settings.
        minibatch_size: training examples per reflective step.
        tie_extensions: when parent and child tie on the minibatch, score both on up to this many
            further minibatches before rejecting (small minibatches tie often on noisy tasks).
        perfect_score, skip_perfect_score: skip a parent already perfect on the minibatch.
        max_reflection_examples, max_reflection_chars: caps on the reflective dataset.
        max_instruction_chars: reject proposals longer than this.
        num_threads: parallel examples in every evaluation.
        seed: all random choices derive from it.
        max_stalled_iterations: stop after this many iterations in a row that spent no metric call
            (every minibatch already perfect, or every proposal rejected before it was scored).
        max_consecutive_failures: stop after this many task-LM runs in a row could not be scored
            (the LM raised, the metric raised or returned a value outside [0, 1], the program
            returned no Prediction), or this many reflection calls in a row could not reach the
            reflection LM; the stop reason names the cause and ``resume=True`` continues the run
            once it is fixed. ``None``: never.
        allow_unbounded_metric: accept any finite metric value, not only [0, 1] (then also set
            ``perfect_score`` and ``demo_threshold`` on the metric's scale).
        max_seconds, max_tokens, max_cost, patience, score_threshold, stoppers: more ways to stop.
        callbacks: :class:`~promptopt.optimizers.callbacks.Callback` instances.
        progress: print a live progress line on stderr.
    """

    name = "gepa"

    def __init__(
        self,
        metric: Callable[..., Any],
        *,
        auto: str | None = None,
        max_metric_calls: int | None = None,
        reflection_lm: LanguageModel | None = None,
        proposer: str | Proposer = "auto",
        component_selector: str = "round_robin",
        evolve_demos: bool = True,
        max_demos: int = 8,
        max_demo_chars: int | None = 6000,
        demo_threshold: float = 1.0,
        labeled_demos: bool = True,
        use_merge: bool = True,
        max_merge_invocations: int = 5,
        merge_subsample: int = 5,
        minibatch_size: int = 3,
        tie_extensions: int = 1,
        perfect_score: float = 1.0,
        skip_perfect_score: bool = True,
        max_reflection_examples: int = 4,
        max_reflection_chars: int = 600,
        max_instruction_chars: int | None = 4000,
        num_threads: int = 4,
        seed: int = 0,
        max_stalled_iterations: int = 12,
        failure_score: float = 0.0,
        max_consecutive_failures: int | None = DEFAULT_MAX_CONSECUTIVE_FAILURES,
        allow_unbounded_metric: bool = False,
        max_seconds: float | None = None,
        max_tokens: int | None = None,
        max_cost: float | None = None,
        patience: int | None = None,
        score_threshold: float | None = None,
        stoppers: Sequence[Stopper] = (),
        callbacks: Sequence[Callback] = (),
        progress: bool = True,
    ) -> None:
        if (auto is None) == (max_metric_calls is None):
            raise ValueError("Give exactly one of auto='light'|'medium'|'heavy' or max_metric_calls=N.")
        if component_selector not in ("round_robin", "all"):
            raise ValueError("component_selector must be 'round_robin' or 'all'.")
        if auto is not None and auto not in AUTO_CANDIDATES:
            raise ValueError(f"auto must be one of {sorted(AUTO_CANDIDATES)}, not {auto!r}.")
        FailureStreak(max_consecutive_failures)  # checks the limit now, not at compile time
        self.metric = metric
        self.auto = auto
        self.max_metric_calls = max_metric_calls
        self.reflection_lm = reflection_lm
        self.proposer = proposer
        self.component_selector = component_selector
        self.evolve_demos = evolve_demos
        self.max_demos = max_demos
        self.max_demo_chars = max_demo_chars
        self.demo_threshold = demo_threshold
        self.labeled_demos = labeled_demos
        self.use_merge = use_merge
        self.max_merge_invocations = max_merge_invocations
        self.merge_subsample = merge_subsample
        self.minibatch_size = minibatch_size
        self.tie_extensions = tie_extensions
        self.perfect_score = perfect_score
        self.skip_perfect_score = skip_perfect_score
        self.max_reflection_examples = max_reflection_examples
        self.max_reflection_chars = max_reflection_chars
        self.max_instruction_chars = max_instruction_chars
        self.num_threads = num_threads
        self.seed = seed
        self.max_stalled_iterations = max_stalled_iterations
        self.failure_score = failure_score
        self.max_consecutive_failures = max_consecutive_failures
        self.allow_unbounded_metric = allow_unbounded_metric
        self.stop_options = StopOptions(
            max_seconds=max_seconds,
            max_tokens=max_tokens,
            max_cost=max_cost,
            patience=patience,
            score_threshold=score_threshold,
            extra=tuple(stoppers),
        )
        self.callbacks = list(callbacks)
        self.progress = progress

    def config(self) -> dict[str, Any]:
        keys = [
            "auto",
            "max_metric_calls",
            "component_selector",
            "evolve_demos",
            "max_demos",
            "max_demo_chars",
            "demo_threshold",
            "labeled_demos",
            "use_merge",
            "max_merge_invocations",
            "merge_subsample",
            "minibatch_size",
            "tie_extensions",
            "perfect_score",
            "skip_perfect_score",
            "max_reflection_examples",
            "max_reflection_chars",
            "max_instruction_chars",
            "seed",
            "max_stalled_iterations",
            "failure_score",
            "max_consecutive_failures",
            "allow_unbounded_metric",
        ]
        cfg = {k: getattr(self, k) for k in keys}
        cfg["proposer"] = self.proposer if isinstance(self.proposer, str) else type(self.proposer).__name__
        cfg.update(self.stop_options.to_dict())
        return cfg

    # ------------------------------------------------------------------
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
        """Optimize ``program``; returns the result with ``best_program`` set.

        Args:
            valset: the validation set (``None``: the trainset).
            lm: the task LM (default: the configured one).
            run_dir: where state, events and results are written (needed for ``resume``).
            resume: continue the run saved in ``run_dir`` instead of starting over.
        """
        train = check_dataset("trainset", trainset, who="GEPA")
        val = check_dataset("valset", train if valset is None else valset, who="GEPA")
        run = _Run(self, program, train, val, lm, run_dir, resume)
        return run.execute()


class _Run:
    """One execution of GEPA.compile: owns the state, the evaluator and the budget."""

    def __init__(
        self,
        opt: GEPA,
        program: Program,
        trainset: list[Example],
        valset: list[Example],
        lm: LanguageModel | None,
        run_dir: str | Path | None,
        resume: bool,
    ) -> None:
        self.opt = opt
        self.program = program
        self.train = {e.id: e for e in trainset}
        self.val = valset
        self.task_lm = lm or settings.get("lm")
        self.reflection_lm = opt.reflection_lm or default_reflection_lm()
        self.proposer = self._make_proposer(opt.proposer)
        self.budget = opt.max_metric_calls or auto_budget(
            opt.auto or "light", len(valset), opt.minibatch_size
        )
        self.rundir = RunDir(run_dir) if run_dir else None
        self.resume = resume
        callbacks = list(opt.callbacks)
        if self.rundir:
            callbacks.append(EventLog(self.rundir.events_file))
        if opt.progress:
            callbacks.append(ProgressLine("GEPA", self.budget))
        self.events = Dispatcher(callbacks)
        stop_file = self.rundir.stop_file if self.rundir else None
        self.stoppers = opt.stop_options.stoppers(max_metric_calls=self.budget, stop_file=stop_file)
        # Failures in a row of the task LM (and metric), and of the reflection LM; neither is saved,
        # so a resumed run starts counting anew.
        self.streak = FailureStreak(opt.max_consecutive_failures)
        self.reflection_streak = FailureStreak(None)
        pred_names = [n for n, _ in program.named_predictors()]
        if not pred_names:
            raise ValueError("The program has no predictors to optimize.")
        self.signatures = {n: p.signature for n, p in program.named_predictors()}
        self.components = [f"{n}.instruction" for n in pred_names]
        if opt.evolve_demos:
            self.components += [f"{n}.demos" for n in pred_names]
        # Free texts the program exposes beside its instructions (a DSPy ReAct's tool descriptions).
        self.texts = program.text_components()
        self.components += list(self.texts)

    def _make_proposer(self, spec: str | Proposer) -> Proposer:
        if not isinstance(spec, str):
            return spec
        choices = {
            "auto": lambda: auto_proposer(self.reflection_lm),
            "rewrite": RewriteProposer,
            "rules": RulesProposer,
            "adaptive": rewrite_or_rules,
        }
        if spec not in choices:
            raise ValueError(f"proposer must be one of {sorted(choices)} or a callable, not {spec!r}.")
        return choices[spec]()

    # --- state ---------------------------------------------------------------
    def _fresh_state(self) -> GEPAState:
        import random

        return GEPAState(
            train_ids=list(self.train),
            val_ids=[e.id for e in self.val],
            rng=rng_to_json(random.Random(self.opt.seed)),
        )

    def _load_or_init(self) -> tuple[GEPAState, bool]:
        if self.rundir and self.resume and self.rundir.has_state():
            try:
                state = GEPAState.from_dict(self.rundir.load_state())
            except (KeyError, TypeError, ValueError) as exc:
                if isinstance(exc, DamagedStateError):
                    raise
                why = f"not a GEPA run state ({type(exc).__name__}: {exc})"
                raise DamagedStateError(self.rundir.state_file, why) from exc
            if state.train_ids != list(self.train) or state.val_ids != [e.id for e in self.val]:
                raise ValueError(
                    f"The run in {self.rundir.path} used other training/validation examples; resume with "
                    "the same data, or start a new run directory."
                )
            return state, True
        if self.rundir and self.rundir.has_state() and not self.resume:
            self.rundir.clear()
        return self._fresh_state(), False

    def _save(self) -> None:
        self.state.rng = rng_to_json(self.rng)
        dump = getattr(self.proposer, "state_dict", None)
        if callable(dump):
            self.state.proposer_state = dump()
        self.state.records = self.evaluator.records
        self.state.unscored_calls = self.evaluator.unscored_calls
        self.state.demo_pool = self.pool.to_dict()
        self.state.progress = self._progress()
        self.state.usage = self._usage_total().to_dict()
        if self.rundir:
            self.rundir.save_state(self.state.to_dict())

    def _usage_total(self) -> Usage:
        total = Usage.from_dict(self._usage_before)
        total.merge(self.usage)
        return total

    def _progress(self) -> Progress:
        usage = self._usage_total()
        p = self.state.progress
        p.iteration = self.state.iteration
        p.metric_calls = self.evaluator.metric_calls
        p.lm_calls, p.tokens, p.cost = usage.calls, usage.total_tokens, usage.cost
        p.seconds = self._seconds_before + (time.time() - self._t0)
        scored = [c for c in self.state.candidates if c.val_scores]
        if scored:
            p.best_score = best_candidate(scored).val_score
        return self.streak.fill(p)

    # --- the run ---------------------------------------------------------------
    def execute(self) -> OptimizationResult:
        if self.rundir:
            self.rundir.lock()
        try:
            return self._execute()
        finally:
            if self.rundir:
                self.rundir.unlock()

    def _execute(self) -> OptimizationResult:
        self.state, resumed = self._load_or_init()
        self.rng = rng_from_json(self.state.rng)
        self.pool = DemoPool(self.state.demo_pool)
        load = getattr(self.proposer, "load_state_dict", None)
        if callable(load):
            load(self.state.proposer_state)
        if self.opt.labeled_demos:
            for name, sig in self.signatures.items():
                self.pool.add_labeled(name, sig, list(self.train.values()))
        self.evaluator = CandidateEvaluator(
            self.program,
            self.opt.metric,
            num_threads=self.opt.num_threads,
            failure_score=self.opt.failure_score,
            lm=self.task_lm,
            records=self.state.records,
            metric_calls=self.state.progress.metric_calls,
            unscored_calls=self.state.unscored_calls,
            streak=self.streak,
            allow_unbounded_metric=self.opt.allow_unbounded_metric,
        )
        self._fill_attempts: dict[int, int] = {}
        self._usage_before = dict(self.state.usage)
        self._seconds_before = self.state.progress.seconds
        self._t0 = time.time()
        self._print_estimate(resumed)
        self.events.on_run_start({"optimizer": "gepa", "config": self.opt.config(), "resumed": resumed})
        with track_usage() as self.usage:
            try:
                self._loop()
            except ConsecutiveFailuresError as exc:
                # Not finished: the saved state is that of the last whole step, and a resumed run
                # scores what could not be scored and goes on from there.
                self.state.stop_reason = str(exc)
        result = self._result()
        if self.rundir:
            result.save(self.rundir.path / "result.json")
            result.best_program.save(self.rundir.path / "best_program.json")  # type: ignore[union-attr]
        self.events.on_run_end({"result": result})
        return result

    def _loop(self) -> None:
        if not self.state.candidates:
            self._add_seed()
        while not self.state.finished:
            self._fill_val_scores()
            if not self.state.candidates[0].val_scores:
                # Nothing can be compared against a seed without a single score.
                p = self.streak.fill(Progress())
                raise ConsecutiveFailuresError(
                    MaxConsecutiveFailures(1)(p) or "stopped: no validation example could be scored"
                )
            reason = first_reason(self.stoppers, self._progress()) or self._exhausted()
            if reason:
                self.state.stop_reason, self.state.finished = reason, True
                self._save()
                break
            try:
                self.state.iteration += 1
                self.events.on_iteration_start({"iteration": self.state.iteration})
                spent_before = self.evaluator.metric_calls
                self._iteration()
                stalled = self.evaluator.metric_calls == spent_before
                self.state.stalled_iterations = self.state.stalled_iterations + 1 if stalled else 0
            except KeyboardInterrupt:
                # The unfinished iteration is dropped; the saved state stays resumable.
                self.state.iteration -= 1
                self.state.stop_reason = "interrupted (Ctrl-C)"
                break
            except ConsecutiveFailuresError:
                self.state.iteration -= 1  # dropped like an interrupted one
                raise
            self._save()
            self.events.on_iteration_end({"iteration": self.state.iteration, "progress": self._progress()})
            limit = self.opt.max_consecutive_failures
            if limit is not None and self.reflection_streak.count >= limit:
                p = self.reflection_streak.fill(Progress())
                raise ConsecutiveFailuresError(MaxConsecutiveFailures(limit)(p) or "")

    # A pair that fails every time (a metric that raises on one example) is not retried forever.
    MAX_FILL_ATTEMPTS = 3

    def _fill_val_scores(self) -> None:
        """Score candidates on the validation examples they have no score for (an LM or metric
        failure left them out); a candidate is tried at most ``MAX_FILL_ATTEMPTS`` times per process."""
        for cand in self.state.candidates:
            missing = [e for e in self.val if e.id not in cand.val_scores]
            if not missing or self._fill_attempts.get(cand.id, 0) >= self.MAX_FILL_ATTEMPTS:
                continue
            self._fill_attempts[cand.id] = self._fill_attempts.get(cand.id, 0) + 1
            try:
                got = scores_of(self.evaluator.run(cand.components, missing))
            except ConsecutiveFailuresError:
                self._add_val_scores(cand, self.evaluator.scored(cand.components, missing))
                self._save()
                raise
            self._add_val_scores(cand, got)
            if got:
                self._save()

    def _add_val_scores(self, cand: Candidate, got: dict[str, float]) -> None:
        if not got:
            return
        known = {**cand.val_scores, **got}
        cand.val_scores = {e.id: known[e.id] for e in self.val if e.id in known}  # validation order
        self.events.on_val_evaluated({"candidate_id": cand.id, "score": cand.val_score})
        if best_candidate([c for c in self.state.candidates if c.val_scores]) is cand:
            curve = self.state.learning_curve
            if not curve or curve[-1][1] != cand.val_score:
                curve.append([self.evaluator.metric_calls, cand.val_score])

    def _exhausted(self) -> str | None:
        """Why no further iteration can help, if so: the stoppers only see spent budget, and an
        iteration that spends none (a perfect minibatch, a rejected proposal) never moves it."""
        perfect = self.opt.perfect_score
        n_val = len(self.val)
        if any(
            len(c.val_scores) == n_val and min(c.val_scores.values()) >= perfect
            for c in self.state.candidates
        ):
            return "a candidate is perfect on every validation example"
        if self.state.stalled_iterations >= self.opt.max_stalled_iterations:
            return (
                f"no progress: {self.state.stalled_iterations} iterations in a row spent no metric call "
                "(every minibatch was already perfect, or every proposal was rejected); raise "
                "max_stalled_iterations or use a stronger reflection LM"
            )
        return None

    def _print_estimate(self, resumed: bool) -> None:
        if not self.opt.progress:
            return
        n_preds = len(self.signatures)
        spent = self.state.progress.metric_calls
        status = f"resuming at {spent}" if resumed else "new run"
        sys.stderr.write(
            f"GEPA: budget {self.budget} metric calls ({status}); "
            f"about {self.budget * n_preds} task-LM calls at most and one reflection call per iteration; "
            f"{len(self.val)} validation and {len(self.train)} training examples, "
            f"{len(self.components)} components.\n"
        )

    def _add_seed(self) -> None:
        comps = serialize_components(self.program.components())
        stopped: ConsecutiveFailuresError | None = None
        try:
            scores = scores_of(self.evaluator.run(comps, self.val))
        except ConsecutiveFailuresError as exc:
            # Saved with what was scored; a resumed run scores the rest before going on.
            scores, stopped = self.evaluator.scored(comps, self.val), exc
        seed = Candidate(
            id=0,
            components=comps,
            origin="seed",
            val_scores=scores,
            discovered_at=self.evaluator.metric_calls,
        )
        self.state.candidates.append(seed)
        if scores:
            self.state.learning_curve.append([self.evaluator.metric_calls, seed.val_score])
            self.state.progress.best_score = seed.val_score
        self.events.on_val_evaluated({"candidate_id": 0, "score": seed.val_score})
        self._save()
        if stopped is not None:
            raise stopped

    # --- one iteration -------------------------------------------------------
    def _iteration(self) -> None:
        st = self.state
        if self.opt.use_merge and st.merges_due > 0 and st.merges_done < self.opt.max_merge_invocations:
            st.merges_due -= 1
            if self._try_merge():
                return
        parent_id = pareto.select_parent(st.candidates, self.rng)
        parent = st.candidates[parent_id]
        self.events.on_parent_selected(
            {"iteration": st.iteration, "candidate_id": parent_id, "front": pareto.front(st.candidates)}
        )
        batch = self._next_minibatch()
        cached = self.evaluator.cached(parent.components, batch)
        if cached is not None and self._perfect(cached) and self.opt.skip_perfect_score:
            self._no_proposal("parent already perfect on this minibatch (no budget spent)")
            return
        parent_recs = self.evaluator.run(parent.components, batch)
        self.pool.add(parent_recs, self.opt.demo_threshold)
        self.events.on_minibatch_evaluated(
            {
                "iteration": st.iteration,
                "candidate_id": parent_id,
                "example_ids": [e.id for e in batch],
                "scores": [r.score if r.scored else None for r in parent_recs],
            }
        )
        if not any(r.scored for r in parent_recs):
            self._no_proposal("the parent could not be scored on this minibatch (LM or metric failures)")
            return
        if self._perfect(parent_recs) and self.opt.skip_perfect_score:
            self._no_proposal("parent already perfect on this minibatch")
            return
        child, changed = self._propose(parent, [r for r in parent_recs if r.scored])
        if child is None:
            return
        child_recs = self.evaluator.run(child, batch)
        self.pool.add(child_recs, self.opt.demo_threshold)
        before, after, judged = _paired_sums(parent_recs, child_recs)
        for _ in range(self.opt.tie_extensions):
            if after != before:
                break
            # A tie on a few examples says little: look at one more minibatch before giving up.
            seen = {e.id for e in batch}
            more = [e for e in self._next_minibatch() if e.id not in seen]  # an epoch may wrap around
            if not more:
                break
            batch = batch + more
            parent_more = self.evaluator.run(parent.components, more)
            more_recs = self.evaluator.run(child, more)
            self.pool.add(more_recs, self.opt.demo_threshold)
            b, a, n = _paired_sums(parent_more, more_recs)
            before, after, judged = before + b, after + a, judged + n
        self._observe(judged > 0 and after > before)
        if judged == 0 or after <= before:
            self.events.on_candidate_rejected(
                {
                    "iteration": st.iteration,
                    "parent_id": parent_id,
                    "component": ",".join(changed),
                    "parent_score": before,
                    "child_score": after,
                    "example_ids": [e.id for e in batch],
                }
            )
            return
        self._accept(child, [parent_id], "reflection:" + ",".join(changed))
        st.merges_due += 1

    def _proposer_stats(self) -> dict[str, Any]:
        """How each proposer of an adaptive one fared (its tallies), for the result's config."""
        return {"proposer_state": self.state.proposer_state} if self.state.proposer_state else {}

    def _observe(self, improved: bool) -> None:
        observe = getattr(self.proposer, "observe", None)
        if callable(observe):
            observe(improved)

    def _no_proposal(self, reason: str, component: str | None = None) -> None:
        """Report that nothing is proposed (for ``component``, or in this iteration at all), and why."""
        self.events.on_proposal(
            {
                "iteration": self.state.iteration,
                "component": component,
                "text": None,
                "accepted": False,
                "reason": reason,
            }
        )

    def _perfect(self, recs: list[Record]) -> bool:
        return all(r.scored and r.score >= self.opt.perfect_score for r in recs)

    def _next_minibatch(self) -> list[Example]:
        st = self.state
        n = min(self.opt.minibatch_size, len(self.train))
        if st.sampler_pos + n > len(st.sampler_order):
            # A new epoch: every training example is seen once before any repeats.
            order = list(self.train)
            self.rng.shuffle(order)
            st.sampler_order, st.sampler_pos = order, 0
        ids = st.sampler_order[st.sampler_pos : st.sampler_pos + n]
        st.sampler_pos += n
        return [self.train[i] for i in ids]

    def _pick_components(self, parent: Candidate) -> list[str]:
        if self.opt.component_selector == "all":
            return [c for c in self.components if c.endswith(".instruction") or c in self.texts]
        key = str(parent.id)
        idx = self.state.next_component.get(key, 0)
        order = [self.components[(idx + k) % len(self.components)] for k in range(len(self.components))]
        self.state.next_component[key] = (idx + 1) % len(self.components)
        return order  # preference order: the first that yields a proposal is used

    def _propose(self, parent: Candidate, recs: list[Record]) -> tuple[dict[str, Any] | None, list[str]]:
        child = dict(parent.components)
        changed: list[str] = []
        for comp in self._pick_components(parent):
            pred, _, kind = comp.rpartition(".")
            if comp in self.texts:
                text = self._reflect(
                    self.texts[comp].predictor, parent.components[comp], recs, comp, self.texts[comp].subject
                )
                if text is None:
                    if self.opt.component_selector == "all":
                        continue
                    return None, []
                child[comp] = text
            elif kind == "demos":
                demos = self.pool.propose(
                    pred,
                    parent.components[comp],
                    self.opt.max_demos,
                    self.rng,
                    max_chars=self.opt.max_demo_chars,
                )
                self.events.on_proposal(
                    {
                        "iteration": self.state.iteration,
                        "component": comp,
                        "text": None if demos is None else f"{len(demos)} demos",
                        "accepted": demos is not None,
                        "reason": "demo pool" if demos else "no new successful traces for this predictor",
                    }
                )
                if demos is None:
                    continue
                child[comp] = demos
            else:
                text = self._reflect(pred, parent.components[comp], recs)
                if text is None:
                    if self.opt.component_selector == "all":
                        continue
                    return None, []  # a rejected proposal ends the iteration; the budget was the reflection
                child[comp] = text
            changed.append(comp)
            if self.opt.component_selector == "round_robin":
                break
        return (child, changed) if changed else (None, [])

    def _reflect(
        self, pred: str, instruction: str, recs: list[Record], comp: str | None = None, subject: str = ""
    ) -> str | None:
        """A new text for ``comp`` (default: ``pred``'s instruction) from ``pred``'s traces, or None."""
        examples = reflective_dataset(
            pred, recs, max_examples=self.opt.max_reflection_examples, max_chars=self.opt.max_reflection_chars
        )
        comp = comp or f"{pred}.instruction"
        if not examples:
            self._no_proposal("the predictor left no trace on this minibatch", comp)
            return None
        request = ProposalRequest(comp, instruction, self.signatures[pred], examples, subject)
        rollout = f"gepa-{self.opt.seed}-{self.state.iteration}-{comp if subject else pred}"
        lm = functools.partial(self.reflection_lm, rollout_id=rollout)
        with track_usage() as used:
            try:
                proposal = self.proposer(request, lm)
            except Exception as exc:
                proposal = Proposal(None, f"reflection failed: {type(exc).__name__}: {exc}")
                if is_lm_failure(exc):
                    self.reflection_streak.failed("reflection-LM", f"{type(exc).__name__}: {exc}")
            else:
                self.reflection_streak.scored()
        self.state.proposer_calls += used.calls
        text, reason = proposal.instruction, proposal.reason
        if text is not None and self.opt.max_instruction_chars and len(text) > self.opt.max_instruction_chars:
            text, reason = (
                None,
                f"too long: {len(proposal.instruction or '')} > {self.opt.max_instruction_chars} chars",
            )
        if text is not None and text.strip() == instruction.strip():
            text, reason = None, "unchanged: identical to the current instruction"
        if text is None:
            self._observe(False)
        self.events.on_proposal(
            {
                "iteration": self.state.iteration,
                "component": comp,
                "text": proposal.instruction,
                "accepted": text is not None,
                "reason": reason,
                "raw": proposal.raw,
                "proposer": proposal.extras.get("proposer"),
            }
        )
        return text

    def _accept(self, components: dict[str, Any], parents: list[int], origin: str) -> Candidate:
        st = self.state
        recs = self.evaluator.run(components, self.val)
        cand = Candidate(
            id=len(st.candidates),
            components=components,
            parents=parents,
            origin=origin,
            val_scores=scores_of(recs),
            iteration=st.iteration,
            discovered_at=self.evaluator.metric_calls,
        )
        scored = [c for c in st.candidates if c.val_scores]
        best_before = best_candidate(scored) if scored else None
        st.candidates.append(cand)
        if cand.val_scores and (best_before is None or compare_on_common(cand, best_before)[0] > 0):
            st.learning_curve.append([self.evaluator.metric_calls, cand.val_score])
            st.progress.last_improvement_iteration = st.iteration
        self.events.on_val_evaluated({"candidate_id": cand.id, "score": cand.val_score})
        self.events.on_candidate_accepted({"iteration": st.iteration, "candidate": cand.to_dict()})
        return cand

    def _try_merge(self) -> bool:
        st = self.state
        tried = set(st.tried_merges)
        found = find_merge(st.candidates, pareto.front(st.candidates), tried, self.rng)
        st.tried_merges = sorted(tried)
        if found is None:
            return False
        a, b, _anc, merged = found
        st.merges_done += 1
        # Judge the merge where its parents disagree most cheaply: a small validation subsample,
        # of examples both parents were scored on.
        ca, cb = st.candidates[a], st.candidates[b]
        common = [e for e in self.val if e.id in ca.val_scores and e.id in cb.val_scores]
        differ = [e for e in common if ca.val_scores[e.id] != cb.val_scores[e.id]]
        pool = differ if len(differ) >= self.opt.merge_subsample else common
        sub = self.rng.sample(pool, min(self.opt.merge_subsample, len(pool)))
        merged_scores = scores_of(self.evaluator.run(merged, sub))
        judged = [e.id for e in sub if e.id in merged_scores]
        merged_sum = sum(merged_scores[i] for i in judged)
        best_parent = max(sum(c.val_scores[i] for i in judged) for c in (ca, cb))
        accepted = bool(judged) and merged_sum >= best_parent
        self.events.on_merge({"iteration": st.iteration, "ids": [a, b], "accepted": accepted})
        if accepted:
            self._accept(merged, [a, b], "merge")
        return True

    # --- the result ----------------------------------------------------------
    def _result(self) -> OptimizationResult:
        st = self.state
        best = best_candidate(st.candidates)
        usage = self._usage_total()
        budget = Budget(
            metric_calls=self.evaluator.metric_calls,
            lm_calls=usage.calls,
            uncached_lm_calls=usage.uncached_calls,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cost=usage.cost,
            seconds=self._progress().seconds,
            proposer_lm_calls=st.proposer_calls,
            unscored_calls=self.evaluator.unscored_calls,
        )
        return OptimizationResult.of_run(
            self.program,
            optimizer="promptopt.GEPA",
            candidates=st.candidates,
            best_id=best.id,
            pareto_front=pareto.front(st.candidates),
            budget=budget,
            learning_curve=[(int(a), float(b)) for a, b in st.learning_curve],
            stop_reason=st.stop_reason or "unknown",
            config={**self.opt.config(), "budget": self.budget, **self._proposer_stats()},
        )


def _paired_sums(parent: list[Record], child: list[Record]) -> tuple[float, float, int]:
    """(parent's sum, child's sum, count) over the examples both were scored on."""
    pairs = [(p.score, c.score) for p, c in zip(parent, child) if p.scored and c.scored]
    return sum(p for p, _ in pairs), sum(c for _, c in pairs), len(pairs)
