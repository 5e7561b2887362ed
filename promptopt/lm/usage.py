"""Token, cost and call accounting, per LM and per block of code."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Any

from promptopt.lm_protocol import Completion

# Set while a judge (an LM-based metric) calls its LM: those calls are counted apart as well as in the
# totals, since a judge is often another, more expensive model than the task's.
_judging: contextvars.ContextVar[bool] = contextvars.ContextVar("promptopt_judging", default=False)


@contextmanager
def judge_calls() -> Iterator[None]:
    """Count the LM calls made inside the block as a judge's (``Usage.judge_*``) too."""
    token = _judging.set(True)
    try:
        yield
    finally:
        _judging.reset(token)


@dataclass
class Usage:
    """Counters of LM use. ``calls`` counts every request, ``cached_calls`` those served from cache;
    the ``judge_*`` counters are the part of them a judge made (see :func:`judge_calls`)."""

    calls: int = 0
    cached_calls: int = 0
    failed_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    lm_seconds: float = 0.0
    judge_calls: int = 0
    judge_prompt_tokens: int = 0
    judge_completion_tokens: int = 0
    judge_cost: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    # A Usage travels between processes inside results (a bench cell run by a worker process or
    # a Ray task): the lock is this process's, so a copy gets its own.
    def __getstate__(self) -> dict[str, Any]:
        with self._lock:  # a consistent snapshot while other threads count
            return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def uncached_calls(self) -> int:
        return self.calls - self.cached_calls

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def judge_tokens(self) -> int:
        return self.judge_prompt_tokens + self.judge_completion_tokens

    def add(self, c: Completion) -> None:
        judging = _judging.get()
        with self._lock:
            self.calls += 1
            self.judge_calls += judging
            if c.cached:
                self.cached_calls += 1
                return  # a cached reply costs nothing and took no LM time
            self.prompt_tokens += c.prompt_tokens
            self.completion_tokens += c.completion_tokens
            self.cost += c.cost
            self.lm_seconds += c.latency
            if judging:
                self.judge_prompt_tokens += c.prompt_tokens
                self.judge_completion_tokens += c.completion_tokens
                self.judge_cost += c.cost

    def add_failure(self) -> None:
        judging = _judging.get()
        with self._lock:
            self.calls += 1
            self.failed_calls += 1
            self.judge_calls += judging

    def merge(self, other: Usage) -> None:
        with self._lock:
            for f in fields(self):
                if not f.name.startswith("_"):
                    setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def to_dict(self) -> dict[str, Any]:
        names = [f.name for f in fields(self) if not f.name.startswith("_")]
        if not self.judge_calls:  # most runs have no judge: their records stay as they were
            names = [n for n in names if not n.startswith("judge_")]
        data: dict[str, Any] = {n: getattr(self, n) for n in names}
        data["total_tokens"] = self.total_tokens
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Usage:
        names = {f.name for f in fields(cls) if not f.name.startswith("_")}
        return cls(**{k: v for k, v in data.items() if k in names})

    def __deepcopy__(self, memo: dict[int, Any]) -> Usage:
        return Usage.from_dict(self.to_dict())


_trackers: contextvars.ContextVar[tuple[Usage, ...]] = contextvars.ContextVar(
    "promptopt_usage_trackers", default=()
)


@contextmanager
def track_usage() -> Iterator[Usage]:
    """Count every LM call made inside the block (including in evaluator threads)."""
    usage = Usage()
    token = _trackers.set((*_trackers.get(), usage))
    try:
        yield usage
    finally:
        _trackers.reset(token)


def report(c: Completion | None) -> None:
    """Tell the active trackers about one call (``None`` for a failed call)."""
    for usage in _trackers.get():
        if c is None:
            usage.add_failure()
        else:
            usage.add(c)
