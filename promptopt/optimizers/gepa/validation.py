"""How a child that won its minibatch is scored on the validation set: all at once, or in stages.

``validation="full"`` (GEPA's own rule): the child is scored on the whole validation set and joins
the candidates.

``validation="adaptive"``: the child is scored on a first stage of the validation examples and goes
on to the next stage, twice as large, only while its mean on the examples scored so far is at least
its parent's on the same examples; a child that falls behind is rejected before the rest of the
validation set is spent on it, and the calls saved pay for more proposals. The stages follow one
seeded order of the validation examples, the same for every child, so the first stages of two
children are the same examples (a screened reflection, judged against its parent alone, starts the
order a stage further on for each child: ``turn``). Every candidate that joins has its full
validation scores, so parent selection, the Pareto front and the final choice compare complete
candidates only (the seed under ``staged_seed`` aside: see demo_seed).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from promptopt.core.example import Example
from promptopt.optimizers import phases
from promptopt.optimizers.evaluation import CandidateEvaluator, scores_of

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
    rejected after ``examples`` scored ones with ``child_mean`` below ``reference_mean`` on the
    examples both were scored on (``compared``)."""

    passed: bool
    examples: int
    child_mean: float = math.nan
    reference_mean: float = math.nan
    compared: tuple[str, ...] = ()


class StagedValidation:
    def __init__(self, val: Sequence[Example], minibatch_size: int, seed: int) -> None:
        self.order = sorted(val, key=lambda e: e.id)
        random.Random(f"gepa-validation-order-{seed}").shuffle(self.order)
        self.sizes = stage_sizes(len(self.order), minibatch_size)

    def first_stage(self) -> list[Example]:
        return self.order[: self.sizes[0]]

    def screen(
        self,
        evaluator: CandidateEvaluator,
        components: dict[str, Any],
        reference: Mapping[str, float],
        turn: int = 0,
    ) -> Screening:
        """Score ``components`` stage by stage against ``reference`` (the parent's validation
        scores); pairs already scored come from the evaluator's records. ``turn`` > 0 starts the
        order that many first stages further on (wrapping around), so that successive children are
        not all judged first on the examples where their parent happened to do well or badly."""
        start = (turn * self.sizes[0]) % len(self.order)
        order = self.order[start:] + self.order[:start]
        got: dict[str, float] = {}
        for size in self.sizes:
            got = scores_of(evaluator.run(components, order[:size], phases.VALIDATION))
            if size == len(order):
                break
            common = [k for k in got if k in reference]
            if not common:  # nothing to compare on yet (failures): the next stage decides
                continue
            child = sum(got[k] for k in common) / len(common)
            parent = sum(reference[k] for k in common) / len(common)
            if child < parent:
                return Screening(False, len(got), child, parent, tuple(common))
        return Screening(True, len(got))


def rejection_event(iteration: int, parent_id: int, origin: str, screening: Screening) -> dict[str, Any]:
    """The ``candidate_rejected`` event of a child a staged validation turned away."""
    return {
        "iteration": iteration,
        "parent_id": parent_id,
        "component": origin.removeprefix("reflection:"),
        "parent_score": screening.reference_mean,
        "child_score": screening.child_mean,
        "example_ids": list(screening.compared),
        "stage": "validation",
    }
