"""Parallel proposals: several parents reflected on, and their children scored, at the same time.

A round of ``k`` proposals runs in three phases, so that its outcome does not depend on which
thread finishes first:

1. in order, for each proposal: its iteration number, its parent (the parent selector), its
   minibatch (the sampler) and the components to change (the component selector), all from the
   run's random stream and state, as ``k`` sequential iterations would draw them;
2. at once, one thread per proposal: score the parent on its minibatch, reflect, score the child
   on the same minibatch. A proposal's own random choices (demo sets) come from a stream seeded by
   its iteration alone, and its reflection call is keyed by its iteration, so a redone round asks
   the same questions;
3. in order again: the demo pool takes each proposal's traces, the acceptance rule judges each
   child (scoring further minibatches, if it asks, one proposal at a time), accepted children
   join the candidates, and the proposer learns the outcomes. A child that beat its parent outright
   was already scored on the validation set in phase 2, at the same time as the others.

The state is saved after the round: a run killed mid-round redoes the round from its start (the LM
cache answers what was already asked). What differs from one proposal at a time: a proposal cannot
build on a child accepted in the same round, and its demo proposals see the pool as it was when the
round began.
"""

from __future__ import annotations

import contextvars
import hashlib
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from promptopt.core.example import Example
from promptopt.optimizers import phases
from promptopt.optimizers.evaluation import Record
from promptopt.optimizers.gepa import pareto
from promptopt.optimizers.gepa.samples import best_of_samples
from promptopt.optimizers.gepa.strategies import ComponentChoice

if TYPE_CHECKING:
    from promptopt.optimizers.gepa.run import GEPARun


@dataclass
class Proposal:
    """One proposal of a round: what phase 1 drew, and what phase 2 found."""

    iteration: int
    parent_id: int
    batch: list[Example]
    choice: ComponentChoice
    skipped: str | None = None  # why no child was made
    parent_recs: list[Record] = field(default_factory=list)
    child: dict[str, Any] | None = None
    changed: list[str] = field(default_factory=list)
    child_recs: list[Record] = field(default_factory=list)
    proposers: list[str] = field(default_factory=list)  # who wrote the child's texts
    known_outcomes: list[tuple[str, bool]] = field(default_factory=list)  # proposals refused early
    sample_runs: list[list[Record]] = field(default_factory=list)  # every sample's minibatch run
    prevalidated: bool = False  # won its minibatch outright: its (first-stage) validation ran in phase 2


def task_rng(seed: int, iteration: int) -> random.Random:
    """A proposal's own random stream: from the run's seed and its iteration alone."""
    digest = hashlib.sha256(f"gepa:{seed}:proposal:{iteration}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def round_size(wanted: int, budget_left: int, proposal_cost: int) -> int:
    """How many proposals the budget left pays for (each may spend ``proposal_cost``: two
    minibatches and an accepted child's validation), at least one: the last rounds of a run are cut
    to fit rather than overspend by ``wanted`` proposals."""
    return max(1, min(wanted, budget_left // max(1, proposal_cost)))


class ParallelRound:
    """Runs one round of proposals for a :class:`~promptopt.optimizers.gepa.run.GEPARun`."""

    def __init__(self, run: GEPARun, size: int) -> None:
        self.run, self.size = run, size

    def execute(self) -> None:
        """The whole round; the run's iteration is the round's last when it returns."""
        start = self.run.state.iteration
        proposals = self.draw()
        self.work(proposals)
        self.settle(proposals)
        self.run.state.iteration = start + len(proposals)

    def draw(self) -> list[Proposal]:
        """Phase 1: each proposal's parent, minibatch and components, in order."""
        run, st = self.run, self.run.state
        out = []
        for k in range(1, self.size + 1):
            parent_id = run.parents.select(st.candidates, run.rng)
            batch = run._next_minibatch()
            choice = run.children.choose(st.candidates[parent_id], st)
            out.append(Proposal(st.iteration + k, parent_id, batch, choice))
        return out

    def work(self, proposals: list[Proposal]) -> None:
        """Phase 2: every proposal at once, each in a copy of this context (settings, usage)."""
        with ThreadPoolExecutor(max_workers=len(proposals), thread_name_prefix="gepa-proposal") as pool:
            futures = [pool.submit(contextvars.copy_context().run, self._one, p) for p in proposals]
            for future in futures:
                future.result()  # the first failure (an LM outage streak, Ctrl-C) ends the round

    def _one(self, p: Proposal) -> None:
        run, cfg = self.run, self.run.cfg
        parent = run.state.candidates[p.parent_id]
        run.events.on_parent_selected(
            {
                "iteration": p.iteration,
                "candidate_id": p.parent_id,
                "front": pareto.front(run.state.candidates),
            }
        )
        cached = run.evaluator.cached(parent.components, p.batch)
        if cached is not None and run._perfect(cached) and cfg.skip_perfect_score:
            p.skipped = "parent already perfect on this minibatch (no budget spent)"
            return
        p.parent_recs = run.evaluator.run(parent.components, p.batch, phases.MINIBATCH)
        run.events.on_minibatch_evaluated(
            {
                "iteration": p.iteration,
                "candidate_id": p.parent_id,
                "example_ids": [e.id for e in p.batch],
                "scores": [r.score if r.scored else None for r in p.parent_recs],
            }
        )
        if not any(r.scored for r in p.parent_recs):
            p.skipped = "the parent could not be scored on this minibatch (LM or metric failures)"
            return
        if run._perfect(p.parent_recs) and cfg.skip_perfect_score:
            p.skipped = "parent already perfect on this minibatch"
            return
        run.children.begin_task()
        recs, rng = [r for r in p.parent_recs if r.scored], task_rng(cfg.seed, p.iteration)
        try:
            if cfg.reflection_samples > 1:
                found = best_of_samples(
                    run,
                    parent,
                    recs,
                    lambda child: run.evaluator.run(child, p.batch, phases.MINIBATCH),
                    rng,
                    choice=p.choice,
                    iteration=p.iteration,
                )
                p.child, p.changed = found.child, found.changed
                p.child_recs, p.sample_runs = found.child_recs, found.runs
            else:
                p.child, p.changed = run.children.propose(
                    parent, recs, run.state, run.pool, rng, choice=p.choice, iteration=p.iteration
                )
        finally:
            p.proposers, p.known_outcomes = run.children.end_task()
        if p.child is not None:
            if not p.child_recs:
                p.child_recs = run.evaluator.run(p.child, p.batch, phases.MINIBATCH)
            # A child that beats its parent outright (no further minibatch asked for) is accepted
            # in phase 3 too: its validation run (the first stage of a staged one) happens here,
            # beside the others, and phase 3 finds the scores in the evaluator's records. A tie is
            # left to phase 3 to settle.
            if run.acceptance.judge(p.parent_recs, p.child_recs, lambda: None).accepted:
                first = run.staged.first_stage() if run.staged is not None else run.val
                run.evaluator.run(p.child, first, phases.VALIDATION)
                p.prevalidated = True

    def settle(self, proposals: list[Proposal]) -> None:
        """Phase 3: pool, acceptance, candidates and proposer outcomes, in the proposals' order."""
        run, cfg, st = self.run, self.run.cfg, self.run.state
        outcomes: list[tuple[str, bool]] = []
        # A child that won outright has only its first validation stage paid for: a tie settled
        # before it may not spend what its later stages need.
        unpaid = len(run.val) - len(run.staged.first_stage()) if run.staged is not None else 0
        for i, p in enumerate(proposals):
            run.reserved = unpaid * sum(q.prevalidated for q in proposals[i + 1 :])
            st.iteration = p.iteration
            run.events.on_iteration_start({"iteration": p.iteration})
            outcomes.extend(p.known_outcomes)
            run.pool.add(p.parent_recs, cfg.demo_threshold)
            for sample_recs in p.sample_runs:  # the kept child's run too: adding twice changes nothing
                run.pool.add(sample_recs, cfg.demo_threshold)
            if p.skipped is not None:
                run.children.no_proposal(p.iteration, p.skipped)
            elif p.child is not None:
                run.pool.add(p.child_recs, cfg.demo_threshold)
                accepted = run._judge(p.parent_id, p.child, p.changed, p.batch, p.parent_recs, p.child_recs)
                outcomes.extend((name, accepted) for name in p.proposers)
            run._count_stall(spent=not (p.skipped or "").endswith("(no budget spent)"))
        run.reserved = 0
        run.children.tally(outcomes)
