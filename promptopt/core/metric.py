"""Metrics: ``metric(example, prediction, trace) -> float | bool | Score``.

A metric may return a bare number (or bool) or a :class:`Score` that carries
feedback text. GEPA reflects on that feedback, so a metric that explains *why*
an answer is wrong gives the optimizer more to work with than a 0.

Evaluations and optimizers accept values in [0, 1] only (see :func:`checked_score`):
a value outside it is an error of the metric, not a score, unless
``allow_unbounded_metric=True`` is passed; NaN and infinity are never scores.
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


class MetricValueError(ValueError):
    """A metric returned something that is not a usable score."""


def as_score(result: Any) -> Score:
    """Normalise whatever a metric returned into a :class:`Score`."""
    score = _normalise(result)
    if math.isnan(score.value):
        raise ValueError("The metric returned NaN; return a number in [0, 1].")
    return score


def _normalise(result: Any) -> Score:
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
    return Score(float(value), feedback)


def call_metric(
    metric: Callable[..., Any], example: Example, prediction: Prediction, trace: Trace | None
) -> Score:
    """Call a 2- or 3-argument metric and normalise its result."""
    return as_score(_call(metric, example, prediction, trace))


def _call(metric: Callable[..., Any], example: Example, prediction: Prediction, trace: Trace | None) -> Any:
    if _arity(metric) >= 3:
        return metric(example, prediction, trace)
    return metric(example, prediction)


def metric_name(metric: Callable[..., Any]) -> str:
    return getattr(metric, "__name__", type(metric).__name__)


def checked_score(
    metric: Callable[..., Any],
    example: Example,
    prediction: Prediction,
    trace: Trace | None,
    *,
    allow_unbounded: bool = False,
) -> Score:
    """Call the metric and check its value: a bool or a number in [0, 1], or a :class:`Score` whose
    value is; any finite number with ``allow_unbounded``.

    Raises :class:`MetricValueError` naming the metric, the example and the value otherwise, so an
    evaluation records that example as a failure of the metric instead of averaging a bad number.
    """
    raw = _call(metric, example, prediction, trace)
    where = f"metric {metric_name(metric)}"
    try:
        score = _normalise(raw)
    except (TypeError, ValueError) as exc:
        raise MetricValueError(f"{where} on example {example.id}: {exc}") from None
    value = score.value
    if math.isfinite(value) and (allow_unbounded or 0.0 <= value <= 1.0):
        return score
    shown = raw if isinstance(raw, (int, float)) and not isinstance(raw, bool) else value
    need = (
        "a finite number" if allow_unbounded else "a bool or a number in [0, 1] (or a Score whose value is)"
    )
    hint = (
        ""
        if allow_unbounded or not math.isfinite(value)
        else "; for a metric on another scale pass allow_unbounded_metric=True to evaluate or the optimizer"
    )
    raise MetricValueError(
        f"{where} returned {shown!r} for example {example.id}; a metric must return {need}{hint}."
    )


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
