"""When an optimization run stops.

A stopper looks at the :class:`Progress` of a run and returns a reason string
to stop, or ``None`` to go on. Any number can be combined; the first reason
wins. Ctrl-C is not a stopper: optimizers catch it and end cleanly with the
best program found so far.

:class:`MaxConsecutiveFailures` is also checked inside evaluations, after every
example (see :class:`FailureStreak`): when the LM is down, or the metric
raises on everything, a run stops after that many failures in a row, saying
why, instead of running through its budget. Such a stop is not final: a
resumed run scores what could not be scored.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol


@dataclass
class Progress:
    """What a run has spent and found so far."""

    iteration: int = 0
    metric_calls: int = 0
    lm_calls: int = 0
    tokens: int = 0
    cost: float = 0.0
    seconds: float = 0.0
    best_score: float = float("-inf")
    last_improvement_iteration: int = 0
    started: float = field(default_factory=time.time)
    consecutive_failures: int = 0  # examples in a row that could not be scored
    failure_kind: str = ""  # what failed last: "LM", "metric" or "program"
    last_failure: str = ""  # its error

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Progress:
        return cls(**data)


class Stopper(Protocol):
    def __call__(self, progress: Progress) -> str | None: ...


@dataclass(frozen=True)
class MaxMetricCalls:
    limit: int

    def __call__(self, p: Progress) -> str | None:
        return f"metric-call budget of {self.limit} spent" if p.metric_calls >= self.limit else None


@dataclass(frozen=True)
class MaxSeconds:
    limit: float

    def __call__(self, p: Progress) -> str | None:
        return f"time limit of {self.limit:.0f}s reached" if p.seconds >= self.limit else None


@dataclass(frozen=True)
class MaxTokens:
    limit: int

    def __call__(self, p: Progress) -> str | None:
        return f"token budget of {self.limit} spent" if p.tokens >= self.limit else None


@dataclass(frozen=True)
class MaxCost:
    limit: float

    def __call__(self, p: Progress) -> str | None:
        return f"cost budget of ${self.limit:.2f} spent" if p.cost >= self.limit else None


@dataclass(frozen=True)
class NoImprovement:
    """Stop after ``patience`` iterations without a better validation score."""

    patience: int

    def __call__(self, p: Progress) -> str | None:
        if p.iteration - p.last_improvement_iteration >= self.patience:
            return f"no improvement in {self.patience} iterations"
        return None


@dataclass(frozen=True)
class ScoreThreshold:
    threshold: float

    def __call__(self, p: Progress) -> str | None:
        return f"validation score reached {self.threshold}" if p.best_score >= self.threshold else None


@dataclass(frozen=True)
class StopFile:
    """Stop when this file exists (``touch RUN_DIR/STOP`` from another shell)."""

    path: str | Path

    def __call__(self, p: Progress) -> str | None:
        return f"stop file {self.path} found" if Path(self.path).exists() else None


@dataclass(frozen=True)
class MaxConsecutiveFailures:
    """Stop after ``limit`` examples in a row that could not be scored: the LM raised (connection
    refused, timeout, server errors after retries), the metric raised or returned an unusable value,
    or the program returned something other than a Prediction."""

    limit: int

    def __call__(self, p: Progress) -> str | None:
        if p.consecutive_failures >= self.limit:
            kind = p.failure_kind or "evaluation"
            return f"stopped: {p.consecutive_failures} consecutive {kind} failures ({p.last_failure})"
        return None


class ConsecutiveFailuresError(RuntimeError):
    """An evaluation was cut short by :class:`MaxConsecutiveFailures`; the message is the reason."""


class FailureStreak:
    """Failures in a row over every evaluation of a run, checked after each example.

    ``failed`` raises :class:`ConsecutiveFailuresError` once :class:`MaxConsecutiveFailures` fires
    (``limit=None`` never stops); ``scored`` ends the streak.
    """

    def __init__(self, limit: int | None = None) -> None:
        if limit is not None and limit < 1:
            raise ValueError("max_consecutive_failures must be at least 1, or None to never stop.")
        self.limit = limit
        self.count = 0
        self.kind = ""
        self.last = ""

    def scored(self) -> None:
        self.count = 0

    def failed(self, kind: str, error: str) -> None:
        self.count += 1
        self.kind, self.last = kind, error
        reason = self.reason()
        if reason:
            raise ConsecutiveFailuresError(reason)

    def reason(self) -> str | None:
        if self.limit is None:
            return None
        return MaxConsecutiveFailures(self.limit)(self.fill(Progress()))

    def fill(self, progress: Progress) -> Progress:
        """``progress`` with this streak's fields set."""
        progress.consecutive_failures = self.count
        progress.failure_kind, progress.last_failure = self.kind, self.last
        return progress


DEFAULT_MAX_CONSECUTIVE_FAILURES = 10


def first_reason(stoppers: list[Stopper], progress: Progress) -> str | None:
    for stop in stoppers:
        reason = stop(progress)
        if reason:
            return reason
    return None


def build_stoppers(
    *,
    max_metric_calls: int | None = None,
    max_seconds: float | None = None,
    max_tokens: int | None = None,
    max_cost: float | None = None,
    patience: int | None = None,
    score_threshold: float | None = None,
    stop_file: str | Path | None = None,
    extra: list[Stopper] | None = None,
    max_consecutive_failures: int | None = None,
) -> list[Stopper]:
    out: list[Stopper] = []
    if max_consecutive_failures is not None:
        out.append(MaxConsecutiveFailures(max_consecutive_failures))
    if max_metric_calls is not None:
        out.append(MaxMetricCalls(max_metric_calls))
    if max_seconds is not None:
        out.append(MaxSeconds(max_seconds))
    if max_tokens is not None:
        out.append(MaxTokens(max_tokens))
    if max_cost is not None:
        out.append(MaxCost(max_cost))
    if patience is not None:
        out.append(NoImprovement(patience))
    if score_threshold is not None:
        out.append(ScoreThreshold(score_threshold))
    if stop_file is not None:
        out.append(StopFile(stop_file))
    out.extend(extra or [])
    return out


@dataclass(frozen=True)
class StopOptions:
    """The optional ways to stop that GEPA, MIPROv2 and BootstrapFewShotWithRandomSearch take.

    Contract:

    * Each field is the constructor keyword of the same name (``extra`` is the ``stoppers``
      keyword); ``None`` turns that way to stop off. BootstrapFewShotWithRandomSearch has no
      ``patience`` keyword: its ``patience`` stays ``None`` and its config leaves the key out.
    * The metric-call budget and the ``RUN_DIR/STOP`` file are not options here: each optimizer
      resolves them itself (GEPA from ``auto``, for one) and passes them to :meth:`stoppers`.
    * :meth:`to_dict` gives the five limits, always all five and in this order, ``None`` included,
      under the keys a saved ``result.config`` uses; ``extra`` (callables) is left out.
    * :meth:`from_dict` reads those keys from any mapping (a whole saved config will do): missing
      ones are ``None``, other keys are ignored, and ``extra`` is given separately, so
      ``StopOptions.from_dict(o.to_dict(), extra=o.extra) == o``.
    * :meth:`stoppers` is ``build_stoppers(...)`` with these options: the same stoppers in the same
      order (metric calls, seconds, tokens, cost, patience, score, stop file, then ``extra``).
    """

    max_seconds: float | None = None
    max_tokens: int | None = None
    max_cost: float | None = None
    patience: int | None = None
    score_threshold: float | None = None
    extra: tuple[Stopper, ...] = ()

    LIMITS: ClassVar[tuple[str, ...]] = (
        "max_seconds",
        "max_tokens",
        "max_cost",
        "patience",
        "score_threshold",
    )

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.LIMITS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, extra: Sequence[Stopper] = ()) -> StopOptions:
        return cls(**{k: data.get(k) for k in cls.LIMITS}, extra=tuple(extra))

    def stoppers(
        self, *, max_metric_calls: int | None = None, stop_file: str | Path | None = None
    ) -> list[Stopper]:
        """The stoppers of these options, with the caller's metric-call budget and stop file."""
        return build_stoppers(
            max_metric_calls=max_metric_calls, stop_file=stop_file, extra=list(self.extra), **self.to_dict()
        )
