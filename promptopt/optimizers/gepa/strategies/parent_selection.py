"""Which candidate a GEPA iteration starts from."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Protocol

from promptopt.optimizers.gepa import pareto
from promptopt.optimizers.gepa.strategies._resolve import resolve
from promptopt.optimizers.result import Candidate, best_candidate


class ParentSelector(Protocol):
    def select(self, candidates: Sequence[Candidate], rng: random.Random) -> int:
        """The id of the candidate to improve; random choices come from ``rng`` (the run's)."""
        ...


class ParetoParentSelector:
    """A candidate on the per-example Pareto front, with probability proportional to the number of
    validation examples it is best on (GEPA's choice: specialists stay alive)."""

    def select(self, candidates: Sequence[Candidate], rng: random.Random) -> int:
        return pareto.select_parent(candidates, rng)


class BestParentSelector:
    """Always the best candidate on validation (greedy; draws nothing from ``rng``)."""

    def select(self, candidates: Sequence[Candidate], rng: random.Random) -> int:
        scored = [c for c in candidates if c.val_scores]
        return best_candidate(scored).id if scored else 0


PARENT_SELECTORS = {"pareto": ParetoParentSelector, "best": BestParentSelector}


def parent_selector(option: str | ParentSelector) -> ParentSelector:
    return resolve(option, PARENT_SELECTORS, "parent_selector", "select")
