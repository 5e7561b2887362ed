"""One example through a program and a metric: the prediction, its score and feedback, the trace,
and, when the example could not be scored, why (see :mod:`promptopt.evaluate`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from promptopt.core.example import Example, Prediction
from promptopt.core.metric import MetricValueError, checked_score, metric_name
from promptopt.core.program import Program
from promptopt.core.trace import Trace, collect_trace
from promptopt.failures import is_lm_failure


@dataclass
class ExampleResult:
    """The outcome of one example: prediction, score, feedback, trace, error."""

    index: int
    example: Example
    prediction: Prediction | None
    score: float
    feedback: str = ""
    trace: Trace = field(default_factory=Trace)
    error: str | None = None
    seconds: float = 0.0
    failure: str | None = None  # "LM", "metric" or "program" when the example could not be scored

    @property
    def scored(self) -> bool:
        """False when an LM, metric or program-contract failure left the example without a score."""
        return self.failure is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "example": self.example.to_dict(),
            "prediction": self.prediction.to_dict() if self.prediction is not None else None,
            "score": self.score,
            "feedback": self.feedback,
            "trace": self.trace.to_list(),
            "error": self.error,
            "seconds": self.seconds,
            "failure": self.failure,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExampleResult:
        pred = data.get("prediction")
        return cls(
            index=data["index"],
            example=Example.from_dict(data["example"]),
            prediction=Prediction.from_dict(pred) if pred is not None else None,
            score=data["score"],
            feedback=data.get("feedback", ""),
            trace=Trace.from_list(data.get("trace", [])),
            error=data.get("error"),
            seconds=data.get("seconds", 0.0),
            failure=data.get("failure"),
        )


def run_example(
    program: Callable[..., Prediction],
    example: Example,
    metric: Callable[..., Any],
    *,
    index: int = 0,
    failure_score: float = 0.0,
    allow_unbounded_metric: bool = False,
) -> ExampleResult:
    """Run the program on one example and score it; never raises for the example's faults."""
    start = time.perf_counter()
    prediction: Prediction | None = None
    error: str | None = None
    failure: str | None = None
    with collect_trace() as trace:
        try:
            output = program(**example.inputs())
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            failure = "LM" if is_lm_failure(exc, trace) else None
        else:
            prediction = _as_prediction(output)
            if prediction is None:
                error, failure = _bad_return(program, output), "program"
    score, feedback = failure_score, f"The program failed: {error}"
    if error is None:
        try:
            s = checked_score(metric, example, prediction, trace, allow_unbounded=allow_unbounded_metric)  # type: ignore[arg-type]
            score, feedback = s.value, s.feedback
        except KeyboardInterrupt:
            raise
        except MetricValueError as exc:
            error, failure = str(exc), "metric"
        except Exception as exc:
            where = f"metric {metric_name(metric)}, example {example.id}"
            error, failure = f"metric raised {type(exc).__name__}: {exc} ({where})", "metric"
        if error is not None:
            feedback = error
    elif failure is not None:
        feedback = error
    return ExampleResult(
        index=index,
        example=example,
        prediction=prediction,
        score=float(score),
        feedback=feedback,
        trace=trace,
        error=error,
        seconds=time.perf_counter() - start,
        failure=failure,
    )


def _as_prediction(value: Any) -> Prediction | None:
    """The program's output as a Prediction, or None when it is not one (nor a mapping of fields)."""
    if isinstance(value, Prediction):
        return value
    if isinstance(value, dict):
        return Prediction(**value)
    if hasattr(value, "items") and not isinstance(value, type):
        try:
            return Prediction(**dict(value.items()))
        except (TypeError, ValueError):
            return None
    return None


def _bad_return(program: Any, value: Any) -> str:
    if isinstance(program, Program):
        owner = f"{type(program).__name__}.forward"
        outputs: list[str] = []
        preds = program.named_predictors()
        if preds:
            outputs = [n for n in preds[-1][1].signature.output_names if n != "reasoning"]
    else:
        owner = getattr(program, "__qualname__", type(program).__name__)
        outputs = []
    fields = ", ".join(f"{n}=..." for n in outputs or ["answer"])
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return (
        f"{owner} returned a {type(value).__name__} ({shown}), not a Prediction; return "
        f"po.Prediction({fields}) with the output fields by name (a dict of them also works)"
    )
