"""Metrics across the bridge: a promptopt metric as DSPy calls one (:func:`dspy_metric`), and a
DSPy metric, in DSPy's 3-argument or dspy.GEPA's feedback form, as promptopt calls one
(:func:`promptopt_metric`)."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Mapping
from typing import Any, Literal

import dspy

from promptopt.core.example import Example, Prediction
from promptopt.core.metric import Score, as_score, call_metric
from promptopt.dspy.conversion import KEY_ATTR, from_dspy_example, from_dspy_prediction, to_dspy_example
from promptopt.optimizers.evaluation import Record

# --- metrics -------------------------------------------------------------------


class DspyMetric:
    """A promptopt metric in DSPy's forms.

    Called as ``(gold, pred, trace=None, pred_name=None, pred_trace=None)``, which covers DSPy's
    evaluators and bootstrapping (2 or 3 arguments) and dspy.GEPA (5). It returns the score as a
    float, or with ``feedback=True`` a ``dspy.Prediction(score=..., feedback=...)``.

    ``calls`` counts scoring calls and ``feedback_calls`` dspy.GEPA's extra per-predictor feedback
    requests (``pred_name`` given); ``log`` keeps ``(candidate key, example id, score)`` per scoring
    call, the key being the :func:`module_key` a :class:`PromptoptModule` put on its prediction.
    """

    def __init__(self, metric: Callable[..., Any], *, feedback: bool = False) -> None:
        self.metric = metric
        self.feedback = feedback
        self.calls = 0
        self.feedback_calls = 0
        self.log: list[tuple[str | None, str, float]] = []
        self._lock = threading.Lock()
        self.__name__ = getattr(metric, "__name__", type(metric).__name__)

    def score(self, gold: Any, pred: Any) -> Score:
        return call_metric(self.metric, from_dspy_example(gold), from_dspy_prediction(pred), None)

    def __call__(
        self, gold: Any, pred: Any, trace: Any = None, pred_name: str | None = None, pred_trace: Any = None
    ) -> Any:
        score = self.score(gold, pred)
        with self._lock:
            if pred_name is None:
                self.calls += 1
                key = vars(pred).get(KEY_ATTR) if hasattr(pred, "__dict__") else None
                self.log.append((key, from_dspy_example(gold).id, score.value))
            else:
                self.feedback_calls += 1
        if self.feedback:
            text = score.feedback or f"This trajectory got a score of {score.value}."
            return dspy.Prediction(score=score.value, feedback=text)
        return score.value


def dspy_metric(metric: Callable[..., Any], *, feedback: bool = False) -> DspyMetric:
    """Wrap ``metric(example, prediction, trace) -> float | Score`` for DSPy (see :class:`DspyMetric`)."""
    return DspyMetric(metric, feedback=feedback)


# --- metrics -------------------------------------------------------------------------------


def _positional_arity(fn: Callable[..., Any]) -> int | None:
    """How many positional arguments ``fn`` takes (None: any number)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    count = 0
    for p in params:
        if p.kind is p.VAR_POSITIONAL:
            return None
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            count += 1
    return count


def metric_form(metric: Callable[..., Any]) -> Literal["dspy", "feedback"]:
    """``"feedback"`` for dspy.GEPA's 5-argument metric ``(gold, pred, trace, pred_name, pred_trace)``
    (or one taking ``*args``), ``"dspy"`` for DSPy's ``(example, prediction[, trace])``."""
    if not callable(metric):
        raise TypeError(f"The metric must be callable, not {type(metric).__name__}.")
    n = _positional_arity(metric)
    if n is None or n >= 5:
        return "feedback"
    if n in (2, 3):
        return "dspy"
    raise TypeError(
        f"The metric {getattr(metric, '__name__', metric)!r} takes {n} positional argument(s); a DSPy metric "
        "is metric(example, prediction, trace=None) or metric(gold, pred, trace, pred_name, pred_trace)."
    )


class _PromptoptMetric:
    """A DSPy metric called as a promptopt metric ``(example, prediction, trace) -> Score``."""

    def __init__(self, metric: Callable[..., Any]) -> None:
        self.form = metric_form(metric)
        n = _positional_arity(metric)
        self.nargs = 5 if n is None else min(n, 5)
        self.metric = metric
        self.__name__ = getattr(metric, "__name__", type(metric).__name__)

    def __call__(self, example: Example, prediction: Prediction, trace: Any = None) -> Score:
        gold = to_dspy_example(example)
        pred = dspy.Prediction(**dict(prediction.items()))
        # As in an evaluation: no DSPy trace, and the module-level score (pred_name None).
        args = (gold, pred, None, None, None)[: self.nargs]
        return as_score(self.metric(*args))


def promptopt_metric(metric: Callable[..., Any]) -> Callable[..., Score]:
    """A DSPy metric in either form (see :func:`metric_form`) as a promptopt metric; feedback is kept."""
    if isinstance(metric, _PromptoptMetric):
        return metric
    return _PromptoptMetric(metric)


class DspyPredictorFeedback:
    """dspy.GEPA's per-predictor feedback for promptopt's GEPA: when GEPA reflects on one predictor,
    the 5-argument metric is called again with that predictor's name (``pred_name``) and its calls
    in the run (``pred_trace``: ``(predictor, inputs, outputs)`` triples), and its feedback replaces
    the run's module-level feedback for that reflection."""

    def __init__(self, metric: Callable[..., Any], predictors: Mapping[str, Any]) -> None:
        self.metric = metric
        self.predictors = dict(predictors)

    def __call__(self, example: Example, record: Record, predictor: str) -> str | None:
        gold = to_dspy_example(example)
        pred = dspy.Prediction(**(record.prediction or {}))
        trace = [
            (self.predictors.get(predictor), dict(e.inputs), dspy.Prediction(**(e.outputs or {})))
            for e in record.entries(predictor)
        ]
        return as_score(self.metric(gold, pred, None, predictor, trace)).feedback or None
