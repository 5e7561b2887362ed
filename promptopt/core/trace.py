"""Traces: a record of every LM call the predictors of a program made.

A trace is collected by running a program inside :func:`collect_trace`. Every
predictor call appends one :class:`TraceEntry`, successful or not, so a parse
failure leaves its raw output and error behind for reflection and debugging.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class TraceEntry:
    """One predictor call: what went in, what came out, what it cost."""

    predictor: str
    inputs: dict[str, Any]
    messages: list[dict[str, str]] = field(default_factory=list)
    raw: str | None = None
    outputs: dict[str, Any] | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency: float = 0.0
    cached: bool = False
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.outputs is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TraceEntry:
        return cls(**data)


class Trace(list[TraceEntry]):
    """The ordered list of :class:`TraceEntry` for one program run."""

    def for_predictor(self, name: str) -> list[TraceEntry]:
        return [e for e in self if e.predictor == name]

    @property
    def errors(self) -> list[str]:
        return [e.error for e in self if e.error]

    def to_list(self) -> list[dict[str, Any]]:
        return [e.to_dict() for e in self]

    @classmethod
    def from_list(cls, rows: list[dict[str, Any]]) -> Trace:
        return cls(TraceEntry.from_dict(r) for r in rows)


_active: contextvars.ContextVar[Trace | None] = contextvars.ContextVar("promptopt_trace", default=None)


@contextmanager
def isolated_trace() -> Iterator[Trace]:
    """Collect the trace of the block apart from any enclosing :func:`collect_trace`: nothing recorded
    inside reaches it. For programs that run inside another's evaluation without being part of it
    (an LM judge scoring an output: its calls are not the judged program's steps)."""
    trace = Trace()
    token = _active.set(trace)
    try:
        yield trace
    finally:
        _active.reset(token)


@contextmanager
def collect_trace() -> Iterator[Trace]:
    """Collect the trace of everything run inside the block (nestable: an enclosing block gets it too)."""
    outer = _active.get()
    with isolated_trace() as trace:
        try:
            yield trace
        finally:
            if outer is not None:
                outer.extend(trace)


def record(entry: TraceEntry) -> None:
    trace = _active.get()
    if trace is not None:
        trace.append(entry)
