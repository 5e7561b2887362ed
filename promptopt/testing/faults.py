"""Faults to inject in tests: a kill in the middle of a run (at the n-th metric call, or when a
trial ends)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from promptopt.optimizers.callbacks import Callback, TrialEvent


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
