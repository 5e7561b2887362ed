"""What a judge said: a verdict per rubric criterion, a rubric's weighted score and feedback, and a
pairwise preference asked in both orders.

A verdict the judge's reply did not give (the reply could not be parsed) has no score and says why:
it is a recorded failure, never a 0 counted as a verdict.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from promptopt.verifiers.rubric import Rubric


@dataclass(frozen=True)
class CriterionVerdict:
    """One criterion judged: ``score`` 1.0 (met), 0.0 (not met), a fraction for an event criterion
    met in some chunks of the trace, or ``None`` when no verdict could be read (``failure`` says why)."""

    criterion: str
    score: float | None
    reason: str = ""
    failure: str | None = None
    chunks: int = 1  # how many pieces of the output or trace were judged for it

    def to_dict(self) -> dict[str, Any]:
        return {
            "criterion": self.criterion,
            "score": self.score,
            "reason": self.reason,
            "failure": self.failure,
            "chunks": self.chunks,
        }


@dataclass(frozen=True)
class RubricVerdict:
    """Every criterion of a rubric judged on one output; ``score`` is their weighted mean, ``None``
    when any verdict is missing (a score over the criteria that parsed would silently reweigh them)."""

    rubric: Rubric
    verdicts: tuple[CriterionVerdict, ...]

    @property
    def failures(self) -> list[CriterionVerdict]:
        return [v for v in self.verdicts if v.score is None]

    @property
    def score(self) -> float | None:
        if self.failures:
            return None
        return self.rubric.weighted_score({v.criterion: float(v.score or 0.0) for v in self.verdicts})

    def feedback(self) -> str:
        """Which criteria were not met and why, for a person or for GEPA's reflection."""
        unmet = [v for v in self.verdicts if v.score is not None and v.score < 1.0]
        met = [v.criterion for v in self.verdicts if v.score == 1.0]
        lines = []
        for v in unmet:
            share = "" if v.score == 0.0 else f" (met in {v.score:.0%} of {v.chunks} parts)"
            wording = self.rubric[v.criterion].description
            lines.append(f"Not met: {v.criterion}{share}: {wording} Judge: {v.reason}".strip())
        for v in self.failures:
            lines.append(f"No verdict on {v.criterion}: {v.failure}")
        if met:
            lines.append("Met: " + ", ".join(met) + ".")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "verdicts": [v.to_dict() for v in self.verdicts],
            "feedback": self.feedback(),
        }


@dataclass(frozen=True)
class PairwiseVerdict:
    """Which of two outputs the judge preferred, asked with each output first in turn.

    ``first_order`` is the output (1 or 2) preferred when output 1 was shown first, ``second_order``
    when output 2 was; ``None`` where the reply could not be read (``failure`` says why). The
    ``winner`` is the output preferred in both orders, and 0 (a tie) when the preference followed the
    position instead of the content.
    """

    first_order: int | None
    second_order: int | None
    reasons: tuple[str, str] = ("", "")
    failure: str | None = None

    @property
    def parsed(self) -> bool:
        return self.first_order is not None and self.second_order is not None

    @property
    def winner(self) -> int | None:
        if not self.parsed:
            return None
        return self.first_order if self.first_order == self.second_order else 0

    @property
    def position_inconsistent(self) -> bool:
        return self.parsed and self.first_order != self.second_order

    @property
    def favoured_position(self) -> str | None:
        """``"first"`` or ``"second"`` for a position-inconsistent verdict: the slot it chose twice."""
        if not self.position_inconsistent:
            return None
        return "first" if self.first_order == 1 else "second"

    def to_dict(self) -> dict[str, Any]:
        return {
            "winner": self.winner,
            "first_order": self.first_order,
            "second_order": self.second_order,
            "position_inconsistent": self.position_inconsistent,
            "reasons": list(self.reasons),
            "failure": self.failure,
        }


def position_bias_rate(verdicts: Sequence[PairwiseVerdict]) -> float:
    """The share of parsed pairwise verdicts that flipped with the order of the outputs."""
    parsed = [v for v in verdicts if v.parsed]
    return sum(v.position_inconsistent for v in parsed) / len(parsed) if parsed else float("nan")
