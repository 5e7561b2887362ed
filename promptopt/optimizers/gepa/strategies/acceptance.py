"""Whether a GEPA child is kept: judged against its parent on the iteration's minibatch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from promptopt.optimizers.evaluation import Record
from promptopt.optimizers.gepa.strategies._resolve import resolve

# More minibatch records of (parent, child), or None when no more examples are left.
Extension = Callable[[], tuple[list[Record], list[Record]] | None]


@dataclass(frozen=True)
class Judgement:
    """Parent's and child's score sums over the ``judged`` examples both were scored on."""

    parent_sum: float
    child_sum: float
    judged: int

    @property
    def accepted(self) -> bool:
        return self.judged > 0 and self.child_sum > self.parent_sum


class AcceptanceRule(Protocol):
    def judge(self, parent: Sequence[Record], child: Sequence[Record], extend: Extension) -> Judgement:
        """Judge ``child`` against ``parent`` on one minibatch (record by record, in the same
        order); ``extend()`` scores both on a further minibatch when the rule wants more."""
        ...


def paired_sums(parent: Sequence[Record], child: Sequence[Record]) -> tuple[float, float, int]:
    """(parent's sum, child's sum, count) over the examples both were scored on."""
    pairs = [(p.score, c.score) for p, c in zip(parent, child) if p.scored and c.scored]
    return sum(p for p, _ in pairs), sum(c for _, c in pairs), len(pairs)


class ImprovementOnMinibatch:
    """Keep a child that scores higher than its parent on the examples both were scored on.

    A tie on a few examples says little, so on a tie both are scored on up to ``tie_extensions``
    further minibatches before the child is rejected (small minibatches tie often on noisy tasks).
    """

    def __init__(self, tie_extensions: int = 1) -> None:
        if tie_extensions < 0:
            raise ValueError(f"tie_extensions must be 0 or more, not {tie_extensions}.")
        self.tie_extensions = tie_extensions

    def judge(self, parent: Sequence[Record], child: Sequence[Record], extend: Extension) -> Judgement:
        before, after, judged = paired_sums(parent, child)
        for _ in range(self.tie_extensions):
            if after != before:
                break
            more = extend()
            if more is None:
                break
            b, a, n = paired_sums(*more)
            before, after, judged = before + b, after + a, judged + n
        return Judgement(before, after, judged)


def acceptance_rule(option: str | AcceptanceRule, tie_extensions: int) -> AcceptanceRule:
    return resolve(
        option, {"improvement": lambda: ImprovementOnMinibatch(tie_extensions)}, "acceptance", "judge"
    )
