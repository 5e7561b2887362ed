"""Score a program on a dataset: in parallel, with per-example results.

Two kinds of failure are told apart, and neither stops the evaluation:

* a *failing example*: the program ran and its output was wrong, or the
  reply could not be parsed, or the program's own code raised. That is a
  score: ``failure_score`` (0.0), with the error kept.
* an example that could not be *scored* (``ExampleResult.failure`` says why):
  the LM raised (connection refused, timeout, server errors after retries,
  ``LMError``, no LM configured) — ``"LM"``; the metric raised or returned
  something other than a bool or a number in [0, 1] — ``"metric"``; the
  program returned something other than a Prediction — ``"program"``. Its
  ``score`` holds ``failure_score`` only so that averages keep their old
  meaning; optimizers leave such examples out of every comparison and run
  them again later.

A reply too long for the model's context is a failing example, not an LM
failure: the candidate's prompt caused it. Results come back in dataset
order, so a parallel run is identical to a serial one.
"""

from __future__ import annotations

import contextvars
import csv
import json
import math
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
from promptopt.core.metric import metric_name
from promptopt.example_run import ExampleResult, run_example
from promptopt.io import json_safe, write_json_atomic
from promptopt.lm.usage import Usage, track_usage
from promptopt.lm_protocol import LanguageModel


def format_score(value: float, as_percent: bool = True) -> str:
    """A mean score for people: a percentage for [0, 1] metrics, the number otherwise, n/a for none."""
    if not math.isfinite(value):
        return "n/a"
    return f"{100 * value:.1f}%" if as_percent else f"{value:.3f}"


def bootstrap_rng_kwarg(seed: int) -> dict[str, Any]:
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
        **bootstrap_rng_kwarg(seed),
    )
    ci = res.confidence_interval
    return (float(ci.low), float(ci.high))


@dataclass
class EvaluationResult:
    """Per-example results plus the aggregate score (a mean in [0, 1]).

    ``score`` and ``scores`` cover every example, those that could not be scored at
    ``failure_score``; ``unscored`` lists those, and the summary counts them.
    """

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

    @property
    def unscored(self) -> list[ExampleResult]:
        """Examples the LM, the metric or the program's return value left without a score."""
        return [r for r in self.results if not r.scored]

    def ci(self, confidence: float = 0.95) -> tuple[float, float]:
        return bootstrap_ci(self.scores, confidence)

    def summary(self) -> str:
        lo, hi = self.ci()
        as_percent = all(0.0 <= s <= 1.0 for s in self.scores)
        unscored = len(self.unscored)
        not_scored = f" ({unscored} not scored: LM, metric or program failures)" if unscored else ""
        return (
            f"{self.metric or 'score'}: {format_score(self.score, as_percent)} "
            f"(95% CI {format_score(lo, as_percent)}-{format_score(hi, as_percent)}) "
            f"on {len(self.results)} examples, {len(self.errors)} errors{not_scored}, "
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
            "unscored": len(self.unscored),
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
        return write_json_atomic(path, json_safe(self.to_dict()))

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
    allow_unbounded_metric: bool = False,
) -> EvaluationResult:
    """Run ``program`` on every example and score it with ``metric``.

    Args:
        num_threads: parallel examples (default 4; 1 runs serially). Results are in
            dataset order whatever the parallelism.
        display_progress: show a progress bar with the running mean.
        failure_score: the score of a failing example (and the stand-in score of one that could
            not be scored; see the module docstring).
        lm: run the program with this LM instead of the configured one.
        on_result: called with each :class:`ExampleResult` as it finishes; an exception it raises
            ends the evaluation (examples not yet started are cancelled) and propagates.
        allow_unbounded_metric: accept any finite metric value, not only [0, 1].
    """
    examples = list(dataset)
    threads = max(1, num_threads or 4)
    name = metric_name(metric)
    results: list[ExampleResult | None] = [None] * len(examples)
    start = time.perf_counter()
    bar = _progress(len(examples), display_progress, name)
    total = 0.0
    done = 0

    def task(i: int, ex: Example) -> ExampleResult:
        return run_example(
            program,
            ex,
            metric,
            index=i,
            failure_score=failure_score,
            allow_unbounded_metric=allow_unbounded_metric,
        )

    def finish(res: ExampleResult) -> None:
        nonlocal total, done
        results[res.index] = res
        total += res.score
        done += 1
        if bar is not None:
            bar.set_postfix_str(f"{name}={format_score(total / done, not allow_unbounded_metric)}")
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
                    except BaseException:
                        # Ctrl-C, or on_result ending the evaluation: start no further example.
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
