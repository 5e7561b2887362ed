"""An optimizer's progress over its metric-call budget, readable wherever the run is watched.

On a terminal or in a notebook it is a tqdm bar (tqdm's notebook widget where IPython runs); in a
captured log, where a bar's carriage returns fold every update into one long line, it is one plain
line per update, at most one every ``log_every`` seconds, and always the last.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from promptopt.optimizers.callbacks import Callback, IterationEndEvent, RunEndEvent


def _interactive(stream: TextIO) -> bool:
    if stream is sys.stderr and "ipykernel" in sys.modules:
        return True
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class ProgressReport:
    """Progress of one run: ``update(done, best_score, **extra)``, then ``close(summary)``."""

    def __init__(
        self, name: str, budget: int | None, *, stream: TextIO | None = None, log_every: float = 15.0
    ) -> None:
        self.name, self.budget = name, budget
        self.stream = stream or sys.stderr
        self.log_every = log_every
        self._bar: Any = None
        self._last_line = float("-inf")
        self._pending = ""
        if _interactive(self.stream):
            from tqdm.auto import tqdm

            self._bar = tqdm(total=budget, desc=name, unit="call", file=self.stream, dynamic_ncols=True)

    def update(self, done: int, best_score: float, **extra: Any) -> None:
        fields = {"best val": f"{100 * best_score:.1f}%", **{k: str(v) for k, v in extra.items()}}
        if self._bar is not None:
            self._bar.update(max(0, done - self._bar.n))
            self._bar.set_postfix(fields, refresh=True)
            return
        budget = f"/{self.budget}" if self.budget else ""
        line = f"{self.name}: metric calls {done}{budget} | " + " | ".join(
            f"{k} {v}" for k, v in fields.items()
        )
        now = time.monotonic()
        if now - self._last_line >= self.log_every:
            self._write(line)
            self._last_line, self._pending = now, ""
        else:
            self._pending = line  # written at close, so the log ends on the final state

    def close(self, summary: str | None = None) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._pending:
            self._write(self._pending)
            self._pending = ""
        if summary:
            self._write(summary)

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()


class ProgressBar(Callback):
    """A :class:`ProgressReport` fed by an optimizer's events (every run with ``progress=True``)."""

    def __init__(self, name: str, budget: int | None = None, stream: TextIO | None = None) -> None:
        self.report = ProgressReport(name, budget, stream=stream)

    def on_iteration_end(self, event: IterationEndEvent) -> None:
        progress = event["progress"]
        self.report.update(
            progress.metric_calls,
            progress.best_score,
            it=event["iteration"],
            **{"LM calls": progress.lm_calls, "s": f"{progress.seconds:.0f}"},
        )

    def on_run_end(self, event: RunEndEvent) -> None:
        self.report.close(event["result"].summary())
