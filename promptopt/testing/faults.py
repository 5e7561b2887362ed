"""Faults to inject in tests: a kill in the middle of a run (at the n-th metric call, or when a
trial ends), and the check that a killed run resumes to the uninterrupted one."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from promptopt.optimizers.callbacks import Callback, TrialEvent
from promptopt.optimizers.result import OptimizationResult


class Killed(BaseException):
    """Stands in for SIGKILL in resume tests: no ``except Exception`` catches it, nothing after it runs."""


def dies_at(metric: Callable[..., Any], call: int) -> Callable[..., Any]:
    """``metric``, killing the run (:class:`Killed`) on its ``call``-th call, counted from 1."""
    calls = 0
    lock = threading.Lock()

    def dying(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        with lock:
            calls += 1
            if calls == call:
                raise Killed()
        return metric(*args, **kwargs)

    return dying


class InterruptAfter(Callback):
    """A callback that raises ``KeyboardInterrupt`` (as Ctrl-C would) when the ``n``-th trial ends."""

    def __init__(self, n: int) -> None:
        self.n, self.seen = n, 0

    def on_trial(self, event: TrialEvent) -> None:
        self.seen += 1
        if self.seen == self.n:
            raise KeyboardInterrupt


class ResumableCompile(Protocol):
    """A test's compile call: one optimizer run in ``run_dir``, with extra callbacks, maybe resumed."""

    def __call__(
        self, run_dir: Path, callbacks: Sequence[Callback] = (), resume: bool = False
    ) -> OptimizationResult: ...


def resumes_to_the_uninterrupted_run(
    compile_: ResumableCompile, killer: Callback, where: Path
) -> tuple[OptimizationResult, OptimizationResult]:
    """Run once uninterrupted, once killed by ``killer`` (a callback raising :class:`Killed`) and then
    resumed, each in its own folder under ``where``; checks that the resumed run ends with the
    uninterrupted run's candidates and metric calls by phase, and returns ``(full, resumed)``."""
    full = compile_(where / "full")
    try:
        compile_(where / "killed", [killer])
    except Killed:
        pass
    else:
        raise AssertionError(f"{type(killer).__name__} never killed the run: nothing was resumed.")
    resumed = compile_(where / "killed", resume=True)
    assert [c.to_dict() for c in resumed.candidates] == [c.to_dict() for c in full.candidates]
    assert resumed.budget.metric_calls_by_phase == full.budget.metric_calls_by_phase
    return full, resumed
