"""The DSPy LMs of one peer run, with call counters, token usage (from the LMs' histories) and wall
time, turned into a :class:`~promptopt.optimizers.result.Budget`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from promptopt.lm.usage import Usage
from promptopt.lm_protocol import LanguageModel
from promptopt.optimizers.result import Budget


class DspyAccounting:
    """The DSPy LMs of one run, with call counters, token usage (from the LMs' histories) and wall time."""

    def __init__(self, task_lm: LanguageModel, other_lm: LanguageModel | None) -> None:
        from promptopt.dspy.lms import dspy_lm
        from promptopt.dspy.usage import CallCounter

        self.task_counter = CallCounter()
        self.other_counter = CallCounter()
        self.task = dspy_lm(task_lm, callbacks=[self.task_counter])
        self.other = dspy_lm(other_lm, callbacks=[self.other_counter]) if other_lm is not None else None
        self.seconds = 0.0

    @property
    def lms(self) -> list[Any]:
        return [self.task] + ([self.other] if self.other is not None else [])

    @contextmanager
    def running(self) -> Iterator[None]:
        import dspy

        start = time.perf_counter()
        try:
            with dspy.context(lm=self.task):
                yield
        finally:
            self.seconds = time.perf_counter() - start

    def budget(
        self, metric_calls: int, extra_seconds: float = 0.0, extra_usage: Usage | None = None
    ) -> Budget:
        """What the run spent: the DSPy LMs' calls and tokens, plus ``extra_usage`` (promptopt LM
        calls made beside DSPy) and ``extra_seconds``."""
        extra = extra_usage or Usage()
        entries = [e for lm in self.lms for e in lm.history]

        def total(key: str) -> int:
            return int(sum(int((e.get("usage") or {}).get(key) or 0) for e in entries))

        calls = self.task_counter.calls + self.other_counter.calls
        return Budget(
            metric_calls=metric_calls,
            lm_calls=calls + extra.calls,
            uncached_lm_calls=calls + extra.uncached_calls,
            prompt_tokens=total("prompt_tokens") + extra.prompt_tokens,
            completion_tokens=total("completion_tokens") + extra.completion_tokens,
            cost=sum(float(e.get("cost") or 0.0) for e in entries) + extra.cost,
            seconds=self.seconds + extra_seconds,
            proposer_lm_calls=self.other_counter.calls,
        )

    def config(self) -> dict[str, Any]:
        recorded = sum(len(lm.history) for lm in self.lms)
        return {
            "task_lm": self.task.model,
            "other_lm": self.other.model if self.other is not None else None,
            "task_lm_calls": self.task_counter.calls,
            "failed_lm_calls": self.task_counter.failed + self.other_counter.failed,
            # DSPy keeps at most settings.max_history_size calls per LM; beyond it tokens are a lower bound.
            "token_counts_complete": recorded >= self.task_counter.calls + self.other_counter.calls,
        }
