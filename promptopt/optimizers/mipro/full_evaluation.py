"""A MIPROv2 combination scored on the whole validation set: the record the shared study keeps
for each one (as an Optuna user attribute, in JSON), read back by every worker."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from promptopt.core.example import Example


@dataclass(frozen=True)
class FullEvaluation:
    """One full evaluation.

    Attributes:
        params: the combination (parameter -> index into the search space).
        val_scores: example id -> score, for the examples that could be scored.
        kind: ``"seed"``, ``"step"`` (every few trials), ``"end"`` (after the last trial) or
            ``"covered"`` (its trials had already scored every example).
        order: its place among the run's full evaluations (a count, never a clock, so a resumed
            run lists candidates as the uninterrupted run did).
        metric_calls: what this evaluation spent; ``usage``: its LM usage.
        after_trial: the number of the last completed trial it saw (-1: none).
        basis: the completed trials it was picked from; ``trials_done``: completed when recorded.
        total_metric_calls: the run's metric calls once it was recorded.
        seconds: the wall time it took (its completion after failures included).
    """

    params: dict[str, int]
    val_scores: dict[str, float]
    kind: str
    order: float
    metric_calls: int = 0
    usage: dict[str, Any] = field(default_factory=dict)
    after_trial: int = -1
    basis: int = 0
    trials_done: int = 0
    total_metric_calls: int = 0
    seconds: float = 0.0

    @property
    def mean(self) -> float:
        scores = self.val_scores
        return sum(scores.values()) / len(scores) if scores else float("-inf")

    def complete(self, val: Sequence[Example]) -> bool:
        return all(e.id in self.val_scores for e in val)

    def completed_with(
        self, val_scores: dict[str, float], spent: int, usage: dict[str, Any], seconds: float = 0.0
    ) -> FullEvaluation:
        """This evaluation with the examples it lacked scored (``spent`` more calls, ``usage``,
        ``seconds`` more): its totals become those of an evaluation done in one go."""
        return replace(
            self,
            val_scores=val_scores,
            metric_calls=self.metric_calls + spent,
            usage=usage,
            total_metric_calls=self.total_metric_calls + spent,
            seconds=self.seconds + seconds,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FullEvaluation:
        """Read a stored record; raises ``ValueError`` naming what is missing or not a record."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a {type(data).__name__}, not a full evaluation record")
        missing = [k for k in ("params", "val_scores", "kind", "order") if k not in data]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        known = {f.name for f in fields(cls)}
        return cls(
            **{k: v for k, v in data.items() if k in known}
            | {
                "params": {k: int(v) for k, v in data["params"].items()},
                "val_scores": dict(data["val_scores"]),
                "order": float(data["order"]),
                "metric_calls": int(data.get("metric_calls", 0)),
                "total_metric_calls": int(data.get("total_metric_calls", 0)),
                "usage": dict(data.get("usage") or {}),
                "seconds": float(data.get("seconds", 0.0)),
            }
        )
