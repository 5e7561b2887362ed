"""Metrics: ``metric(example, prediction, trace) -> float | bool | Score``.

A metric may return a bare number (or bool) or a :class:`Score` that carries
feedback text. GEPA reflects on that feedback, so a metric that explains *why*
an answer is wrong gives the optimizer more to work with than a 0.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from promptopt.core.example import Example, Prediction
from promptopt.core.trace import Trace


@dataclass(frozen=True)
class Score:
    """A metric value in [0, 1] (by convention) plus feedback for reflection."""

    value: float
    feedback: str = ""

    def __float__(self) -> float:
        return float(self.value)

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "feedback": self.feedback}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Score:
        return cls(float(data["value"]), data.get("feedback", ""))


class Metric(Protocol):
    def __call__(
        self, example: Example, prediction: Prediction, trace: Trace | None = None
    ) -> float | bool | Score: ...


def as_score(result: Any) -> Score:
    """Normalise whatever a metric returned into a :class:`Score`."""
    if isinstance(result, Score):
        value, feedback = result.value, result.feedback
    elif isinstance(result, (bool, int, float)):
        value, feedback = float(result), ""
    elif isinstance(result, dict) and "score" in result:  # gepa / dspy.GEPA feedback shape
        value, feedback = float(result["score"]), str(result.get("feedback", "") or "")
    elif hasattr(result, "score"):  # dspy.Prediction(score=..., feedback=...)
        value, feedback = float(result.score), str(getattr(result, "feedback", "") or "")
    else:
        raise TypeError(
            f"A metric must return a float, bool or Score, not {type(result).__name__}: {result!r}"
        )
    if math.isnan(value):
        raise ValueError("The metric returned NaN; return a number in [0, 1].")
    return Score(float(value), feedback)


def call_metric(
    metric: Callable[..., Any], example: Example, prediction: Prediction, trace: Trace | None
) -> Score:
    """Call a 2- or 3-argument metric and normalise its result."""
    if _arity(metric) >= 3:
        return as_score(metric(example, prediction, trace))
    return as_score(metric(example, prediction))


def _arity(fn: Callable[..., Any]) -> int:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 3
    count = 0
    for p in params:
        if p.kind in (p.VAR_POSITIONAL,):
            return 3
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            count += 1
    return count


def exact_match(field: str = "answer", *, normalize: bool = True) -> Callable[..., Score]:
    """A metric comparing ``prediction[field]`` to ``example[field]`` with feedback."""

    def norm(x: Any) -> str:
        s = str(x).strip()
        return " ".join(s.lower().strip(" .").split()) if normalize else s

    def metric(example: Example, prediction: Prediction, trace: Trace | None = None) -> Score:
        got, want = prediction.get(field), example.get(field)
        if got is not None and norm(got) == norm(want):
            return Score(1.0, f"Correct: {field} = {want!r}.")
        return Score(0.0, f"Wrong {field}: predicted {got!r}, expected {want!r}.")

    metric.__name__ = f"exact_match_{field}"
    return metric
