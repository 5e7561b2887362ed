"""Counting what DSPy spends: calls of its LMs (:class:`CallCounter`), tokens per call
(:class:`CallUsage`), and reporting a DSPy task LM's calls to promptopt's usage trackers
(:class:`TaskUsageReporter`)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from dspy.utils.callback import BaseCallback

from promptopt.lm.usage import report
from promptopt.lm_protocol import Completion


class CallCounter(BaseCallback):
    """A DSPy callback counting the calls (and failed calls) of the LMs it is attached to."""

    def __init__(self) -> None:
        self.calls = 0
        self.failed = 0
        self._lock = threading.Lock()

    def on_lm_end(self, call_id: str, outputs: Any, exception: Exception | None = None) -> None:
        with self._lock:
            self.calls += 1
            if exception is not None:
                self.failed += 1


class CallUsage:
    """A DSPy usage tracker for one call."""

    def __init__(self) -> None:
        self.seen = False
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cost = 0.0

    def add_usage(self, lm: str, usage: Mapping[str, Any]) -> None:
        self.seen = True
        self.prompt_tokens += _tokens(usage, "prompt_tokens", "input_tokens")
        self.completion_tokens += _tokens(usage, "completion_tokens", "output_tokens")
        self.cost += float(usage.get("cost") or 0.0)


def _tokens(usage: Mapping[str, Any], *names: str) -> int:
    for name in names:
        value = usage.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return int(value)
    return 0


class TaskUsageReporter:
    """A DSPy usage tracker that reports the task LM's uncached calls to promptopt's trackers.

    Calls of a dspy.LM that itself runs on a promptopt LM (``dspy_lm(..., route="promptopt")``)
    are already reported by that LM and are skipped.
    """

    def add_usage(self, lm: str, usage: Mapping[str, Any]) -> None:
        if str(lm).startswith("promptopt/"):
            return
        report(
            Completion(
                text="",
                prompt_tokens=_tokens(usage, "prompt_tokens", "input_tokens"),
                completion_tokens=_tokens(usage, "completion_tokens", "output_tokens"),
                cost=float(usage.get("cost") or 0.0),
                model=str(lm),
            )
        )
