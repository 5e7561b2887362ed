"""One GEPA compile call: the search loop on a :class:`~promptopt.optimizers.session.RunSession`.

The session owns the run directory, events, stoppers, spending and the result; this module owns
GEPA's state (saved after every iteration), the iteration, proposals, merges and acceptance, with
the decisions made by the strategies of :mod:`promptopt.optimizers.gepa.strategies`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from promptopt.core.example import Example
from promptopt.core.program import Program
from promptopt.lm_protocol import LanguageModel
from promptopt.optimizers import phases
from promptopt.optimizers.components import serialize_components
from promptopt.optimizers.evaluation import CandidateEvaluator, Record, scores_of
from promptopt.optimizers.gepa import pareto
from promptopt.optimizers.gepa.budget_plan import proposal_cost, why_exhausted
from promptopt.optimizers.gepa.child import ChildProposer, make_proposer
from promptopt.optimizers.gepa.config import GEPAConfig
from promptopt.optimizers.gepa.demo_seed import (
    add_demo_seed,
    add_spare_demo_set,
    complete_seed,
    seed_completion_due,
    spare_demo_set_due,
)
from promptopt.optimizers.gepa.demos import DemoPool
from promptopt.optimizers.gepa.merge import try_merge
from promptopt.optimizers.gepa.parallel import ParallelRound, round_size
from promptopt.optimizers.gepa.samples import sampled_step
from promptopt.optimizers.gepa.screened_reflection import (
    add_spare_reflection,
    screened_child,
    screens,
    spare_reflection_due,
)
from promptopt.optimizers.gepa.state import GEPAState, rng_from_json, rng_to_json
from promptopt.optimizers.gepa.summary import print_estimate, result_of
from promptopt.optimizers.gepa.validation import StagedValidation, rejection_event
from promptopt.optimizers.result import Candidate, OptimizationResult, best_candidate, compare_on_common
from promptopt.optimizers.session import RunSession
from promptopt.optimizers.stoppers import (
    ConsecutiveFailuresError,
    MaxConsecutiveFailures,
    Progress,
)

RESULT_NAME = "promptopt.GEPA"


class GEPARun:
    """One execution of ``GEPA.compile``."""

    # A pair that fails every time (a metric that raises on one example) is not retried forever.
    MAX_FILL_ATTEMPTS = 3

    def __init__(
        self,
        cfg: GEPAConfig,
        session: RunSession,
        trainset: list[Example],
        valset: list[Example],
        reflection_lm: LanguageModel,
        config: dict[str, Any],
    ) -> None:
        self.cfg = cfg
        self.session = session
        self.events = session.events
        self.program: Program = session.program
        self.train = {e.id: e for e in trainset}
        self.val = valset
        # The stages every staged score follows (spare steps, screened reflections, the seed against
        # the demo candidate); ``staged`` is set when every accepted child is screened on them too.
        self.stages = StagedValidation(valset, cfg.minibatch_size, cfg.seed)
        self.staged = self.stages if cfg.validation == "adaptive" else None
        self.reserved = 0  # budget promised to later proposals of a parallel round (their stages)
        self.config = config
        self.proposer = make_proposer(cfg.proposer, reflection_lm)
        self.parents, self.sampler, selector, self.acceptance = cfg.strategies()
        self.budget = cfg.budget(len(valset))
        pred_names = [n for n, _ in self.program.named_predictors()]
        # Free texts beside the instructions (a DSPy ReAct's tool descriptions, a task app's prompts).
        self.texts = self.program.text_components()
        if not pred_names and not self.texts:
            raise ValueError("The program has no predictors or text components to optimize.")
        self.signatures = {n: p.signature for n, p in self.program.named_predictors()}
        self.components = [f"{n}.instruction" for n in pred_names]
        self.components += [f"{n}.demos" for n in pred_names] if cfg.evolve_demos else []
        self.components += list(self.texts)
        self.children = ChildProposer(
            cfg,
            self.proposer,
            reflection_lm,
            selector,
            signatures=self.signatures,
            components=self.components,
            texts=self.texts,
            events=self.events,
            examples=self.train,
            clock=self.session.clock,
        )
        self._fill_attempts: dict[int, int] = {}

    # --- state ---------------------------------------------------------------
    def _load_or_init(self) -> tuple[GEPAState, bool]:
        saved = self.session.saved_state()
        train_ids, val_ids = list(self.train), [e.id for e in self.val]
        if saved is None:
            return GEPAState.new(train_ids, val_ids, self.cfg.seed), False
        return GEPAState.resumed(saved, train_ids, val_ids, self.session.rundir.state_file), True  # type: ignore[union-attr]

    def _save(self) -> None:
        self.state.rng = rng_to_json(self.rng)
        if callable(dump := getattr(self.proposer, "state_dict", None)):
            self.state.proposer_state = dump()
        self.state.records = self.evaluator.records
        self.state.unscored_calls = self.evaluator.unscored_calls
        self.state.demo_pool = self.pool.to_dict()
        self.state.progress = self._progress()
        self.state.usage = self.session.total_usage().to_dict()
        self.state.phase_seconds = self.session.clock.totals()
        self.session.save_state(self.state.to_dict())

    def _progress(self) -> Progress:
        scored = [c for c in self.state.candidates if c.val_scores]
        p = self.state.progress
        return self.session.progress(
            iteration=self.state.iteration,
            metric_calls=self.evaluator.metric_calls,
            best_score=best_candidate(scored).val_score if scored else p.best_score,
            last_improvement_iteration=p.last_improvement_iteration,
            into=p,
        )

    # --- the run ---------------------------------------------------------------
    def execute(self) -> OptimizationResult:
        self.state, resumed = self._load_or_init()
        self.rng = rng_from_json(self.state.rng)
        self.pool = DemoPool(self.state.demo_pool)
        if callable(load := getattr(self.proposer, "load_state_dict", None)):
            load(self.state.proposer_state)
        if self.cfg.labeled_demos:
            for name, sig in self.signatures.items():
                self.pool.add_labeled(name, sig, list(self.train.values()))
        self.evaluator: CandidateEvaluator = self.session.restore_evaluator(
            self.state.records, self.state.progress.metric_calls, self.state.unscored_calls
        )
        self.session.restore_spending(self.state.usage, self.state.progress.seconds, self.state.phase_seconds)
        print_estimate(self, resumed)
        self.session.start("gepa", self.config, resumed)
        if self.state.finished and not (self.session.stop_reason(self._progress()) or self._exhausted()):
            # Resumed under a larger budget or a later deadline, a finished run goes on; under stop
            # conditions that still hold it is left as it ended (nothing rescored, nothing spent).
            self.state.finished = False
        try:
            self._loop()
        except ConsecutiveFailuresError as exc:
            # Not finished: the saved state is that of the last whole step, and a resumed run
            # scores what could not be scored and goes on from there.
            self.state.stop_reason = str(exc)
        return self.session.end(result_of(self))

    def _loop(self) -> None:
        if not self.state.candidates:
            self._add_seed()
        while not self.state.finished:
            self._fill_val_scores()
            if not self.state.candidates[0].val_scores:
                # Nothing can be compared against a seed without a single score.
                p = self.session.streak.fill(Progress())
                raise ConsecutiveFailuresError(
                    MaxConsecutiveFailures(1)(p) or "stopped: no validation example could be scored"
                )
            reason = self.session.stop_reason(self._progress()) or self._exhausted()
            if reason:
                self.state.stop_reason, self.state.finished = reason, True
                self._save()
                break
            started_at = self.state.iteration
            try:
                ended = self._step()
            except KeyboardInterrupt:
                # The unfinished step is dropped; the saved state stays resumable.
                self.state.iteration = started_at
                self.state.stop_reason = "interrupted (Ctrl-C)"
                break
            except ConsecutiveFailuresError:
                self.state.iteration = started_at  # dropped like an interrupted one
                raise
            self._save()
            for iteration in ended:
                self.events.on_iteration_end({"iteration": iteration, "progress": self._progress()})
            limit = self.session.options.max_consecutive_failures
            if limit is not None and self.children.reflection_streak.count >= limit:
                p = self.children.reflection_streak.fill(Progress())
                raise ConsecutiveFailuresError(MaxConsecutiveFailures(limit)(p) or "")

    def _fill_val_scores(self) -> None:
        """Score candidates on the validation examples they have no score for (an LM or metric
        failure left them out); a candidate is tried at most ``MAX_FILL_ATTEMPTS`` times per process."""
        for cand in self.state.candidates:
            if cand.id == 0 and self.state.seed_staged:
                continue  # scored in stages against the demo candidate (demo_seed.settle_seed)
            missing = [e for e in self.val if e.id not in cand.val_scores]
            if not missing or self._fill_attempts.get(cand.id, 0) >= self.MAX_FILL_ATTEMPTS:
                continue
            self._fill_attempts[cand.id] = self._fill_attempts.get(cand.id, 0) + 1
            try:
                got = scores_of(self.evaluator.run(cand.components, missing, phases.VALIDATION))
            except ConsecutiveFailuresError:
                self.add_val_scores(cand, self.evaluator.scored(cand.components, missing))
                self._save()
                raise
            self.add_val_scores(cand, got)
            if got:
                self._save()

    def add_val_scores(self, cand: Candidate, got: dict[str, float]) -> None:
        """Record ``cand``'s new validation scores (kept in validation order)."""
        if not got:
            return
        known = {**cand.val_scores, **got}
        cand.val_scores = {e.id: known[e.id] for e in self.val if e.id in known}  # validation order
        self.events.on_val_evaluated({"candidate_id": cand.id, "score": cand.val_score})
        if best_candidate([c for c in self.state.candidates if c.val_scores]) is cand:
            curve = self.state.learning_curve
            if not curve or curve[-1][1] != cand.val_score:
                curve.append([self.evaluator.metric_calls, cand.val_score])

    def budget_left(self) -> int:
        return self.budget - self.evaluator.metric_calls

    def proposal_cost(self) -> int:
        return proposal_cost(self.cfg.minibatch_size, len(self.val), self.cfg.reflection_samples)

    def _exhausted(self) -> str | None:
        st, cfg = self.state, self.cfg
        return why_exhausted(
            st.candidates,
            budget_left=self.budget_left(),
            minibatch_size=cfg.minibatch_size,
            n_val=len(self.val),
            perfect_score=cfg.perfect_score,
            stalled_iterations=st.stalled_iterations,
            max_stalled_iterations=cfg.max_stalled_iterations,
            samples=cfg.reflection_samples,
            # The demo candidate is made whenever its runs and validation fit (add_demo_seed).
            spare_step=self._spare_step() is not None or bool(cfg.seed_demos and not st.demo_seed_done),
        )

    def _add_seed(self) -> None:
        comps = serialize_components(self.program.components())
        stopped: ConsecutiveFailuresError | None = None
        # With a demo candidate to come, the seed starts on the first validation stage only.
        staged = bool(self.cfg.seed_demos and self.cfg.staged_seed and self.signatures)
        self.state.seed_staged = staged
        examples = self.stages.first_stage() if staged else self.val
        try:
            scores = scores_of(self.evaluator.run(comps, examples, phases.VALIDATION))
            if not scores and staged:
                # A first stage with no score has nothing to weigh against the demo candidate.
                self.state.seed_staged, examples = False, self.val
                scores = scores_of(self.evaluator.run(comps, examples, phases.VALIDATION))
        except ConsecutiveFailuresError as exc:
            # Saved with what was scored; a resumed run scores the rest before going on.
            scores, stopped = self.evaluator.scored(comps, examples), exc
        spent = self.evaluator.metric_calls
        seed = Candidate(id=0, components=comps, origin="seed", val_scores=scores, discovered_at=spent)
        self.state.candidates.append(seed)
        if scores:
            self.state.learning_curve.append([self.evaluator.metric_calls, seed.val_score])
            self.state.progress.best_score = seed.val_score
        self.events.on_val_evaluated({"candidate_id": 0, "score": seed.val_score})
        self._save()
        if stopped is not None:
            raise stopped

    # --- one step: an iteration, or a round of parallel proposals -------------
    def _step(self) -> list[int]:
        """Run the next iteration, or round of iterations; returns their numbers."""
        st, cfg = self.state, self.cfg
        if cfg.seed_demos and not st.demo_seed_done:
            return add_demo_seed(self)  # before the first proposal; ends no iteration
        spare = self._spare_step()
        if spare is not None:
            return spare(self)  # what a proposal can no longer use; ends no iteration
        merge_due = cfg.use_merge and st.merges_due > 0 and st.merges_done < cfg.max_merge_invocations
        size = round_size(cfg.parallel_proposals, self.budget_left(), self.proposal_cost())
        if size > 1 and not merge_due:
            first = st.iteration + 1
            ParallelRound(self, size).execute()
            return list(range(first, st.iteration + 1))
        st.iteration += 1
        self.events.on_iteration_start({"iteration": st.iteration})
        spent_before = self.evaluator.metric_calls
        self._iteration()
        self._count_stall(spent=self.evaluator.metric_calls != spent_before)
        return [st.iteration]

    def _spare_step(self) -> Callable[[GEPARun], list[int]] | None:
        """What a budget too small for a proposal goes to, once the demo candidate is made: a
        reflection judged on validation stages and a spare demo set in turn (the reflections
        counted with the iterations' screened children); when neither fits, the rest of a
        staged seed's validation; None when nothing can be done."""
        if not self.cfg.seed_demos:
            return None
        reflection, demo_set = spare_reflection_due(self), spare_demo_set_due(self)
        if reflection and (not demo_set or self.state.screened_children <= self.state.spare_demo_sets):
            return add_spare_reflection
        if demo_set:
            return add_spare_demo_set
        return complete_seed if seed_completion_due(self) else None

    def _count_stall(self, spent: bool) -> None:
        self.state.stalled_iterations = 0 if spent else self.state.stalled_iterations + 1

    def _iteration(self) -> None:
        st, cfg = self.state, self.cfg
        if cfg.use_merge and st.merges_due > 0 and st.merges_done < cfg.max_merge_invocations:
            st.merges_due -= 1
            if try_merge(self):
                return
        parent_id = self.parents.select(st.candidates, self.rng)
        parent = st.candidates[parent_id]
        self.events.on_parent_selected(
            {"iteration": st.iteration, "candidate_id": parent_id, "front": pareto.front(st.candidates)}
        )
        if screens(self, parent):  # its demos hold the training examples: see screened_reflection
            if screened_child(self, parent):
                st.merges_due += 1
            return
        batch = self._next_minibatch()
        cached = self.evaluator.cached(parent.components, batch)
        if cached is not None and self._perfect(cached) and cfg.skip_perfect_score:
            self._skip("parent already perfect on this minibatch (no budget spent)")
            return
        parent_recs = self.evaluator.run(parent.components, batch, phases.MINIBATCH)
        self.pool.add(parent_recs, cfg.demo_threshold)
        self.events.on_minibatch_evaluated(
            {
                "iteration": st.iteration,
                "candidate_id": parent_id,
                "example_ids": [e.id for e in batch],
                "scores": [r.score if r.scored else None for r in parent_recs],
            }
        )
        if not any(r.scored for r in parent_recs):
            self._skip("the parent could not be scored on this minibatch (LM or metric failures)")
            return
        if self._perfect(parent_recs) and cfg.skip_perfect_score:
            self._skip("parent already perfect on this minibatch")
            return
        if cfg.reflection_samples > 1:
            return sampled_step(self, parent_id, batch, parent_recs)
        child, changed = self.children.propose(
            parent, [r for r in parent_recs if r.scored], self.state, self.pool, self.rng
        )
        if child is None:
            return
        child_recs = self.evaluator.run(child, batch, phases.MINIBATCH)
        self.pool.add(child_recs, cfg.demo_threshold)
        self.children.observe(self._judge(parent_id, child, changed, batch, parent_recs, child_recs))

    def _judge(
        self,
        parent_id: int,
        child: dict[str, Any],
        changed: list[str],
        batch: list[Example],
        parent_recs: list[Record],
        child_recs: list[Record],
    ) -> bool:
        """Whether the child beats its parent on the minibatch (and more, if the acceptance rule
        asks); an accepted child is scored on the validation set and joins the candidates."""
        st, cfg, parent = self.state, self.cfg, self.state.candidates[parent_id]
        judged = [batch]

        def extend() -> tuple[list[Record], list[Record]] | None:
            if self.budget_left() - self.reserved < self.proposal_cost():  # validations come first
                return None
            seen = {e.id for e in judged[0]}
            more = [e for e in self._next_minibatch() if e.id not in seen]  # an epoch may wrap around
            if not more:
                return None
            judged[0] = judged[0] + more
            parent_more = self.evaluator.run(parent.components, more, phases.TIE_EXTENSION)
            child_more = self.evaluator.run(child, more, phases.TIE_EXTENSION)
            self.pool.add(child_more, cfg.demo_threshold)
            return parent_more, child_more

        verdict = self.acceptance.judge(parent_recs, child_recs, extend)
        if not verdict.accepted:
            self.events.on_candidate_rejected(
                {
                    "iteration": st.iteration,
                    "parent_id": parent_id,
                    "component": ",".join(changed),
                    "parent_score": verdict.parent_sum,
                    "child_score": verdict.child_sum,
                    "example_ids": [e.id for e in judged[0]],
                }
            )
            return False
        if self.accept(child, [parent_id], "reflection:" + ",".join(changed)) is None:
            return False
        st.merges_due += 1
        return True

    def _skip(self, reason: str) -> None:
        self.children.no_proposal(self.state.iteration, reason)

    def _perfect(self, recs: list[Record]) -> bool:
        return all(r.scored and r.score >= self.cfg.perfect_score for r in recs)

    def _next_minibatch(self) -> list[Example]:
        ids = self.sampler.next_batch(self.state, self.cfg.minibatch_size, self.rng)
        return [self.train[i] for i in ids]

    def accept(
        self, components: dict[str, Any], parents: list[int], origin: str, *, screen: bool = True
    ) -> Candidate | None:
        """Score a child on validation and add it to the candidates (None: a staged one refused it).
        ``screen=False``: on the whole validation set even under staged validation."""
        st = self.state
        if self.staged is not None and screen:
            reference = max((st.candidates[p] for p in parents), key=lambda c: c.val_score)
            screening = self.staged.screen(self.evaluator, components, reference.val_scores)
            if not screening.passed:
                event = rejection_event(st.iteration, reference.id, origin, screening)
                self.events.on_candidate_rejected(event)  # type: ignore[arg-type]
                return None
        recs = self.evaluator.run(components, self.val, phases.VALIDATION)
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
