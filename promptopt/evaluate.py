"""Score a program on a dataset: in parallel, with per-example results.

A failing example (the LM errored, the reply could not be parsed, the program
raised) is scored ``failure_score`` and keeps its error and trace; it never
stops the run. Results come back in dataset order, so a parallel run is
identical to a serial one.
"""

from __future__ import annotations

import contextvars
import csv
import json
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from promptopt.core import settings
from promptopt.core.example import Example, Prediction
from promptopt.core.metric import call_metric
from promptopt.core.program import write_json_atomic
from promptopt.core.trace import Trace, collect_trace
from promptopt.lm.base import LanguageModel
from promptopt.lm.usage import Usage, track_usage


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
        )


def run_example(
    program: Callable[..., Prediction],
    example: Example,
    metric: Callable[..., Any],
    *,
    index: int = 0,
    failure_score: float = 0.0,
) -> ExampleResult:
    """Run the program on one example and score it; never raises for the example's faults."""
    start = time.perf_counter()
    prediction: Prediction | None = None
    error: str | None = None
    with collect_trace() as trace:
        try:
            prediction = program(**example.inputs())
            if not isinstance(prediction, Prediction):
                prediction = _as_prediction(prediction)
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
    if error is None:
        try:
            s = call_metric(metric, example, prediction, trace)  # type: ignore[arg-type]
            score, feedback = s.value, s.feedback
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            error = f"metric raised {type(exc).__name__}: {exc}"
            score, feedback = failure_score, error
    else:
        score, feedback = failure_score, f"The program failed: {error}"
    return ExampleResult(
        index=index,
        example=example,
        prediction=prediction,
        score=float(score),
        feedback=feedback,
        trace=trace,
        error=error,
        seconds=time.perf_counter() - start,
    )


def _as_prediction(value: Any) -> Prediction:
    if isinstance(value, dict):
        return Prediction(**value)
    if hasattr(value, "items"):
        return Prediction(**dict(value.items()))
    raise TypeError(f"A program must return a Prediction or a dict, not {type(value).__name__}.")


def _rng_kwarg(seed: int) -> dict[str, Any]:
    """scipy >= 1.15 takes ``rng``; older releases take the same Generator as ``random_state``."""
    import inspect

    from scipy import stats

    name = "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"
    return {name: np.random.default_rng(seed)}


def bootstrap_ci(
    scores: Sequence[float], confidence: float = 0.95, resamples: int = 9999, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (``scipy.stats.bootstrap``), deterministic for a given seed.

    No scores give ``(nan, nan)``; one score, or scores that are all equal, give ``(mean, mean)``: every
    resample has that mean (scipy itself refuses fewer than two observations). The percentile method is
    used rather than BCa because BCa is undefined on such degenerate resamples and unstable on 0/1
    scores that differ on a few examples only.
    """
    arr = np.asarray(scores, dtype=float).ravel()
    if arr.size == 0:
        return (float("nan"), float("nan"))
    mean = float(arr.mean())
    if arr.size == 1 or np.all(arr == arr[0]):
        return (mean, mean)
    from scipy import stats

    res = stats.bootstrap(
        (arr,),
        np.mean,
        n_resamples=resamples,
        confidence_level=confidence,
        method="percentile",
        vectorized=True,
        **_rng_kwarg(seed),
    )
    ci = res.confidence_interval
    return (float(ci.low), float(ci.high))


@dataclass
class EvaluationResult:
    """Per-example results plus the aggregate score (a mean in [0, 1])."""

    results: list[ExampleResult]
    usage: Usage = field(default_factory=Usage)
    seconds: float = 0.0
    metric: str = ""

    @property
    def scores(self) -> list[float]:
        return [r.score for r in self.results]

    @property
    def score(self) -> float:
        return float(np.mean(self.scores)) if self.results else float("nan")

    @property
    def errors(self) -> list[ExampleResult]:
        return [r for r in self.results if r.error]

    def ci(self, confidence: float = 0.95) -> tuple[float, float]:
        return bootstrap_ci(self.scores, confidence)

    def summary(self) -> str:
        lo, hi = self.ci()
        return (
            f"{self.metric or 'score'}: {100 * self.score:.1f}% (95% CI {100 * lo:.1f}-{100 * hi:.1f}) "
            f"on {len(self.results)} examples, {len(self.errors)} errors, "
            f"{self.usage.calls} LM calls ({self.usage.cached_calls} cached), "
            f"{self.usage.total_tokens} tokens, {self.seconds:.1f}s"
        )

    def __repr__(self) -> str:
        return f"EvaluationResult({self.summary()})"

    def to_pandas(self) -> Any:
        import pandas as pd

        rows = []
        for r in self.results:
            row: dict[str, Any] = {"id": r.example.id}
            row.update({f"example.{k}": v for k, v in r.example.items()})
            if r.prediction is not None:
                row.update({f"pred.{k}": v for k, v in r.prediction.items()})
            row.update(
                score=r.score,
                feedback=r.feedback,
                error=r.error,
                lm_calls=len(r.trace),
                seconds=round(r.seconds, 3),
            )
            rows.append(row)
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
        lo, hi = self.ci()
        return {
            "metric": self.metric,
            "score": self.score,
            "ci95": [lo, hi],
            "n": len(self.results),
            "errors": len(self.errors),
            "seconds": self.seconds,
            "usage": self.usage.to_dict(),
            "results": [r.to_dict() for r in self.results],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvaluationResult:
        return cls(
            results=[ExampleResult.from_dict(r) for r in data["results"]],
            usage=Usage.from_dict(data.get("usage", {})),
            seconds=data.get("seconds", 0.0),
            metric=data.get("metric", ""),
        )

    def to_json(self, path: str | os.PathLike[str]) -> Path:
        return write_json_atomic(path, self.to_dict())

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> EvaluationResult:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        self.to_pandas().to_csv(target, index=False, quoting=csv.QUOTE_NONNUMERIC)
        return target


def evaluate(
    program: Callable[..., Prediction],
    dataset: Sequence[Example],
    metric: Callable[..., Any],
    *,
    num_threads: int | None = None,
    display_progress: bool = True,
    failure_score: float = 0.0,
    lm: LanguageModel | None = None,
    on_result: Callable[[ExampleResult], None] | None = None,
) -> EvaluationResult:
    """Run ``program`` on every example and score it with ``metric``.

    Args:
        num_threads: parallel examples (default 4; 1 runs serially). Results are in
            dataset order whatever the parallelism.
        display_progress: show a progress bar with the running mean.
        failure_score: the score of an example whose program or metric failed.
        lm: run the program with this LM instead of the configured one.
        on_result: called with each :class:`ExampleResult` as it finishes.
    """
    examples = list(dataset)
    threads = max(1, num_threads or 4)
    name = getattr(metric, "__name__", type(metric).__name__)
    results: list[ExampleResult | None] = [None] * len(examples)
    start = time.perf_counter()
    bar = _progress(len(examples), display_progress, name)
    total = 0.0
    done = 0

    def task(i: int, ex: Example) -> ExampleResult:
        return run_example(program, ex, metric, index=i, failure_score=failure_score)

    def finish(res: ExampleResult) -> None:
        nonlocal total, done
        results[res.index] = res
        total += res.score
        done += 1
        if bar is not None:
            bar.set_postfix_str(f"{name}={100 * total / done:.1f}%")
            bar.update(1)
        if on_result is not None:
            on_result(res)

    overrides = {"lm": lm} if lm is not None else {}
    with settings.context(**overrides), track_usage() as usage:
        try:
            if threads == 1:
                for i, ex in enumerate(examples):
                    finish(task(i, ex))
            else:
                with ThreadPoolExecutor(max_workers=threads) as pool:
                    futures = [
                        pool.submit(contextvars.copy_context().run, task, i, ex)
                        for i, ex in enumerate(examples)
                    ]
                    try:
                        for fut in as_completed(futures):
                            finish(fut.result())
                    except KeyboardInterrupt:
                        pool.shutdown(wait=False, cancel_futures=True)
                        raise
        finally:
            if bar is not None:
                bar.close()
    return EvaluationResult(
        results=[r for r in results if r is not None],
        usage=usage,
        seconds=time.perf_counter() - start,
        metric=name,
    )


def _progress(total: int, enabled: bool, desc: str) -> Any:
    if not enabled or total == 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"evaluate ({desc})", dynamic_ncols=True, leave=True)
