"""A finished cell's numbers: both programs' per-example test scores, the paired lift, validation
scores, what the optimizer spent, its learning curve and the components it adopted."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from promptopt.bench.record_fields import RecordError, as_object, required
from promptopt.bench.stats import PairedLift, pair_by_id, sign_counts, sign_test
from promptopt.lm.usage import Usage


@dataclass(frozen=True)
class SplitScores:
    """One program scored on the examples of one split, example by example."""

    score: float
    ids: tuple[str, ...]
    scores: tuple[float, ...]
    errors: int = 0
    usage: Usage = field(default_factory=Usage)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "ids": list(self.ids),
            "scores": list(self.scores),
            "errors": self.errors,
            "usage": self.usage.to_dict(),
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, data: Any, name: str = "scores") -> SplitScores:
        data = as_object(data, name)
        ids, scores = required(data, "ids", f"{name}."), required(data, "scores", f"{name}.")
        if len(ids) != len(scores):
            raise RecordError(f"{name} has {len(ids)} example ids but {len(scores)} scores")
        return cls(
            score=required(data, "score", f"{name}."),
            ids=tuple(ids),
            scores=tuple(scores),
            errors=data.get("errors", 0),
            usage=Usage.from_dict(data.get("usage") or {}),
            seconds=data.get("seconds", 0.0),
        )


@dataclass(frozen=True)
class CellSpending:
    """What the optimizer spent: the budget unit (metric calls), LM calls, tokens, cost and time."""

    metric_calls: int
    lm_calls: int
    tokens: int
    seconds: float
    metric_calls_counted: int = 0  # counted at the metric, for optimizers that report none
    uncached_lm_calls: int | None = None  # None: recorded before LM calls were told apart
    proposer_lm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    seconds_this_process: float = 0.0  # the seconds of the last process (a resumed run's share)
    metric_calls_by_phase: dict[str, int] = field(default_factory=dict)  # empty: not reported
    seconds_by_phase: dict[str, float] = field(default_factory=dict)  # empty: not reported

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric_calls_by_phase": dict(self.metric_calls_by_phase),
            "seconds_by_phase": dict(self.seconds_by_phase),
            "metric_calls": self.metric_calls,
            "metric_calls_counted": self.metric_calls_counted,
            "lm_calls": self.lm_calls,
            "uncached_lm_calls": self.uncached_lm_calls,
            "proposer_lm_calls": self.proposer_lm_calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost": self.cost,
            "seconds": self.seconds,
            "seconds_this_process": self.seconds_this_process,
            "tokens": self.tokens,
        }

    @classmethod
    def from_dict(cls, data: Any) -> CellSpending:
        data = as_object(data, "budget")
        names = ("metric_calls", "lm_calls", "tokens", "seconds")
        present = {name: required(data, name, "budget.") for name in names}
        return cls(
            **present,
            metric_calls_counted=data.get("metric_calls_counted", 0),
            uncached_lm_calls=data.get("uncached_lm_calls"),
            proposer_lm_calls=data.get("proposer_lm_calls", 0),
            prompt_tokens=data.get("prompt_tokens", 0),
            completion_tokens=data.get("completion_tokens", 0),
            cost=data.get("cost", 0.0),
            seconds_this_process=data.get("seconds_this_process", 0.0),
            metric_calls_by_phase=dict(data.get("metric_calls_by_phase") or {}),
            seconds_by_phase=dict(data.get("seconds_by_phase") or {}),
        )


@dataclass(frozen=True)
class OptimizerSummary:
    """Which optimizer ran, why it stopped, its options and how many candidates it scored."""

    name: str
    stop_reason: str
    config: Mapping[str, Any]
    candidates: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "stop_reason": self.stop_reason,
            "config": dict(self.config),
            "candidates": self.candidates,
        }

    @classmethod
    def from_dict(cls, data: Any) -> OptimizerSummary:
        data = as_object(data, "optimizer")
        return cls(
            name=required(data, "name", "optimizer."),
            stop_reason=data.get("stop_reason") or "",
            config=dict(data.get("config") or {}),
            candidates=data.get("candidates", 0),
        )


# Lift statistics that cells stored by older code lack; they are counted from the per-example scores.
_COUNTED = ("n_distinct", "wins", "losses", "ties", "sign_p")


def _counted(baseline: SplitScores, optimized: SplitScores, n: int | None) -> dict[str, Any]:
    _, base, opt = pair_by_id(baseline.ids, baseline.scores, optimized.ids, optimized.scores)
    wins, losses, ties = sign_counts([o - b for b, o in zip(base, opt, strict=True)])
    return {
        "n_distinct": len(base) if n is None else n,
        "wins": wins,
        "losses": losses,
        "ties": ties,
        "sign_p": sign_test(wins, losses),
    }


@dataclass(frozen=True)
class CellNumbers:
    """A finished cell's numbers: both programs on the test split, the paired lift, validation scores,
    what the optimizer spent, its learning curve and the components it adopted."""

    splits: Mapping[str, Sequence[str]]
    baseline_test: SplitScores
    baseline_val: float
    optimized_test: SplitScores
    optimized_val: float
    lift: PairedLift
    spending: CellSpending
    learning_curve: tuple[tuple[float, float], ...]
    components: Mapping[str, Any]
    optimizer: OptimizerSummary

    def to_dict(self) -> dict[str, Any]:
        return {
            "splits": {name: list(ids) for name, ids in self.splits.items()},
            "baseline": {"test": self.baseline_test.to_dict(), "val_score": self.baseline_val},
            "optimized": {"test": self.optimized_test.to_dict(), "val_score": self.optimized_val},
            "lift": self.lift.to_dict(),
            "validation": {"baseline": self.baseline_val, "optimized": self.optimized_val},
            "budget": self.spending.to_dict(),
            "learning_curve": [list(point) for point in self.learning_curve],
            "components": dict(self.components),
            "optimizer": self.optimizer.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CellNumbers:
        for name in ("baseline", "optimized", "lift", "budget", "splits"):
            required(data, name)
        baseline, optimized = (
            as_object(data["baseline"], "baseline"),
            as_object(data["optimized"], "optimized"),
        )
        validation = as_object(data.get("validation") or {}, "validation")
        baseline_test = SplitScores.from_dict(required(baseline, "test", "baseline."), "baseline.test")
        optimized_test = SplitScores.from_dict(required(optimized, "test", "optimized."), "optimized.test")
        lift = dict(as_object(data["lift"], "lift"))
        if any(name not in lift for name in _COUNTED):
            lift = {**_counted(baseline_test, optimized_test, lift.get("n")), **lift}
        try:
            paired_lift = PairedLift.from_dict(lift)
        except KeyError as exc:
            raise RecordError(f"its lift lacks {exc}") from exc
        return cls(
            splits={name: list(ids) for name, ids in as_object(data["splits"], "splits").items()},
            baseline_test=baseline_test,
            baseline_val=validation.get("baseline", baseline.get("val_score")),
            optimized_test=optimized_test,
            optimized_val=validation.get("optimized", optimized.get("val_score")),
            lift=paired_lift,
            spending=CellSpending.from_dict(data["budget"]),
            learning_curve=tuple((x, y) for x, y in data.get("learning_curve") or ()),
            components=dict(data.get("components") or {}),
            optimizer=OptimizerSummary.from_dict(data.get("optimizer") or {"name": ""}),
        )
