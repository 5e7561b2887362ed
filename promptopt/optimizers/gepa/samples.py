"""Several children per GEPA step, the best one kept: less rides on one sampled reflection.

A reflection LM samples its proposals (temperature 0.7 here), so in plain GEPA one draw decides
each step, and with a small budget a few draws decide the run: two runs that differ only in their
seed can end far apart. With ``reflection_samples=k`` a step asks the reflector ``k`` times for the
same parent, minibatch and components (each ask its own rollout, so the LM cache does not hand one
reply back ``k`` times), scores every child on that minibatch, and sends only the best on to the
acceptance rule and, if it is accepted, to the validation set. The parent's minibatch run and the
one validation are shared, so ``k`` samples cost ``k - 1`` more minibatch runs, not ``k`` steps.

The best child has the highest mean score over the minibatch examples it could be scored on; ties go
to the earlier sample. A sample that the guard rails refuse (unchanged, too long, no reply) is not
scored. With an adaptive proposer each sample's proposer hears its own outcome: the children that
were not the best lost, the best one's outcome is the step's.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from promptopt.core.example import Example
from promptopt.optimizers import phases
from promptopt.optimizers.evaluation import Record
from promptopt.optimizers.gepa.strategies import ComponentChoice
from promptopt.optimizers.result import Candidate

if TYPE_CHECKING:
    from promptopt.optimizers.gepa.run import GEPARun


@dataclass
class Samples:
    """What a step's samples gave: the best child (None when every sample was refused) and the
    minibatch runs of all of them (their successful traces feed the demo pool)."""

    child: dict[str, Any] | None = None
    changed: list[str] = field(default_factory=list)
    child_recs: list[Record] = field(default_factory=list)
    runs: list[list[Record]] = field(default_factory=list)


def mean_score(recs: list[Record]) -> float | None:
    scores = [r.score for r in recs if r.scored]
    return sum(scores) / len(scores) if scores else None


def best_of_samples(
    run: GEPARun,
    parent: Candidate,
    recs: list[Record],
    batch_score: Callable[[dict[str, Any]], list[Record]],
    rng: random.Random,
    *,
    choice: ComponentChoice | None = None,
    iteration: int | None = None,
) -> Samples:
    """``run.cfg.reflection_samples`` children of ``parent`` for one set of components, each scored
    by ``batch_score`` (its run on the step's minibatch); the best of them.

    Called while the child proposer collects this thread's outcomes (``begin_task``): the proposers
    of the children that were not the best are told so, the best one's stay pending for the step.
    """
    children = run.children
    choice = choice or children.choose(parent, run.state)
    out = Samples()
    best_names: list[str] = []
    losers: list[list[str]] = []
    best_mean: float | None = None
    seen: list[dict[str, Any]] = []
    for sample in range(run.cfg.reflection_samples):
        child, changed = children.propose(
            parent, recs, run.state, run.pool, rng, choice=choice, iteration=iteration, sample=sample
        )
        names = children.take_names()  # a refused proposal was already told it lost
        if child is None or child in seen:
            losers.append(names)
            continue
        seen.append(child)
        child_recs = batch_score(child)
        out.runs.append(child_recs)
        mean = mean_score(child_recs)
        if mean is not None and (best_mean is None or mean > best_mean):
            if out.child is not None:
                losers.append(best_names)
            out.child, out.changed, out.child_recs = child, changed, child_recs
            best_mean, best_names = mean, names
        else:
            losers.append(names)
    children.settle_samples(best_names, losers)
    return out


def sampled_step(run: GEPARun, parent_id: int, batch: list[Example], parent_recs: list[Record]) -> None:
    """The rest of a serial step with several samples: children, the best one judged, outcomes told."""
    parent = run.state.candidates[parent_id]
    children = run.children
    children.begin_task()
    try:
        found = best_of_samples(
            run,
            parent,
            [r for r in parent_recs if r.scored],
            lambda child: run.evaluator.run(child, batch, phases.MINIBATCH),
            run.rng,
        )
    finally:
        names, outcomes = children.end_task()
    for child_recs in found.runs:
        run.pool.add(child_recs, run.cfg.demo_threshold)
    accepted = found.child is not None and run._judge(
        parent_id, found.child, found.changed, batch, parent_recs, found.child_recs
    )
    children.tally(outcomes + [(name, accepted) for name in names])
