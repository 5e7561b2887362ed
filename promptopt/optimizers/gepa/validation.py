"""How a child that won its minibatch is scored on the validation set: all at once, or in stages.

``validation="full"`` (GEPA's own rule): the child is scored on the whole validation set and joins
the candidates.

``validation="adaptive"``: the child is scored on a first stage of the validation examples and goes
on to the next stage, twice as large, only while its mean on the examples scored so far is at least
its parent's on the same examples; a child that falls behind is rejected before the rest of the
validation set is spent on it, and the calls saved pay for more proposals. A child whose answers on
every example of a stage are its parent's, its parent's failures there included, stops there too: a
rewording the task LM answers the same way (common for a small model that mostly follows its demos)
would otherwise be scored on the whole validation set to join as a copy of its parent, a full
validation that tells nothing. A child that answers differently goes on at a tie, since it may win
where its parent loses, and so does a copy of a parent that was perfect on the stage (there was
nothing to win there). The stages follow one
seeded order of the validation examples, the same for every child, so the first stages of two
children are the same examples (a screened reflection, judged against its parent alone, starts the
order a stage further on for each child: ``turn``). Every candidate that joins has its full
validation scores, so parent selection, the Pareto front and the final choice compare complete
candidates only (the seed under ``staged_seed`` aside: see demo_seed).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from promptopt.core.example import Example
from promptopt.optimizers import phases
from promptopt.optimizers.evaluation import CandidateEvaluator, Record, scores_of
from promptopt.optimizers.result import Candidate

VALIDATION_MODES = ("full", "adaptive")


def stage_sizes(n_val: int, minibatch_size: int) -> list[int]:
    """Examples scored after each stage: a quarter of the set (at least a minibatch), doubling, then all."""
    sizes = [min(n_val, max(minibatch_size, math.ceil(n_val / 4)))]
    while sizes[-1] < n_val:
        sizes.append(min(n_val, 2 * sizes[-1]))
    return sizes


@dataclass(frozen=True)
class Screening:
    """What the staged validation decided: ``passed`` (scored on every validation example), or
    rejected after ``examples`` scored ones, with ``child_mean`` and ``reference_mean`` on the
    examples both were scored on (``compared``) and the ``reason``: ``"behind"`` (a lower mean) or
    ``"same"`` (the reference's answer on every one of them, a failure of the reference included)."""

    passed: bool
    examples: int
    child_mean: float = math.nan
    reference_mean: float = math.nan
    compared: tuple[str, ...] = ()
    reason: str = ""


class StagedValidation:
    def __init__(
        self, val: Sequence[Example], minibatch_size: int, seed: int, perfect_score: float = 1.0
    ) -> None:
        self.order = sorted(val, key=lambda e: e.id)
        random.Random(f"gepa-validation-order-{seed}").shuffle(self.order)
        self.sizes = stage_sizes(len(self.order), minibatch_size)
        self.perfect_score = perfect_score

    def first_stage(self) -> list[Example]:
        return self.order[: self.sizes[0]]

    def screen(
        self,
        evaluator: CandidateEvaluator,
        components: dict[str, Any],
        reference: Candidate,
        turn: int = 0,
        *,
        stop_on_same: bool = True,
    ) -> Screening:
        """Score ``components`` stage by stage against ``reference`` (the parent, scored on every
        validation example) while their mean is at least the reference's and, with
        ``stop_on_same``, they answer some example differently once the reference failed one;
        pairs already scored come from the evaluator's records. ``turn`` > 0 starts the
        order that many first stages further on (wrapping around), so that successive children are
        not all judged first on the examples where their parent happened to do well or badly."""
        start = (turn * self.sizes[0]) % len(self.order)
        order = self.order[start:] + self.order[:start]
        ref_scores = reference.val_scores
        got: dict[str, float] = {}
        for size in self.sizes:
            records = evaluator.run(components, order[:size], phases.VALIDATION)
            got = scores_of(records)
            if size == len(order):
                break
            common = [k for k in got if k in ref_scores]
            if not common:  # nothing to compare on yet (failures): the next stage decides
                continue
            child = sum(got[k] for k in common) / len(common)
            parent = sum(ref_scores[k] for k in common) / len(common)
            if child < parent:
                return Screening(False, len(got), child, parent, tuple(common), "behind")
            failed = any(ref_scores[k] < self.perfect_score for k in common)
            if stop_on_same and failed and self._answers_as(evaluator, records, reference, common):
                return Screening(False, len(got), child, parent, tuple(common), "same")
        return Screening(True, len(got))

    def _answers_as(
        self,
        evaluator: CandidateEvaluator,
        records: Sequence[Record],
        reference: Candidate,
        example_ids: Sequence[str],
    ) -> bool:
        """Whether ``records`` hold the reference's recorded prediction on every one of
        ``example_ids`` (one without a prediction on either side counts as different)."""
        ours = {r.example_id: r.prediction for r in records if r.scored}
        wanted = set(example_ids)
        theirs = evaluator.cached(reference.components, [e for e in self.order if e.id in wanted])
        if theirs is None:  # a reference answer not recorded: nothing to call the same
            return False
        return all(ours.get(r.example_id) is not None and ours[r.example_id] == r.prediction for r in theirs)


def rejection_event(iteration: int, parent_id: int, origin: str, screening: Screening) -> dict[str, Any]:
    """The ``candidate_rejected`` event of a child a staged validation turned away: a child behind
    its parent has the lower ``child_score``, one that answered as its parent the same score."""
    return {
        "iteration": iteration,
        "parent_id": parent_id,
        "component": origin.removeprefix("reflection:"),
        "parent_score": screening.reference_mean,
        "child_score": screening.child_mean,
        "example_ids": list(screening.compared),
        "stage": "validation",
    }
