"""Callbacks: watch every step of an optimization run.

Subclass :class:`Callback` and override the ``on_<event>`` methods you need;
each receives keyword arguments only. Events emitted by the optimizers:

``run_start`` (optimizer, config, resumed), ``iteration_start`` (iteration),
``parent_selected`` (iteration, candidate_id, front), ``minibatch_evaluated``
(iteration, candidate_id, example_ids, scores), ``proposal`` (iteration,
component, text, accepted, reason), ``candidate_accepted`` (iteration, candidate),
``candidate_rejected`` (iteration, parent_id, component, parent_score, child_score),
``merge`` (iteration, ids, accepted), ``val_evaluated`` (candidate_id, score),
``trial`` (trial), ``iteration_end`` (iteration, progress), ``run_end`` (result).

A callback that raises does not stop the run; the error is logged.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("promptopt")


class Callback:
    """Base class: every ``on_<event>`` is a no-op until overridden."""

    def on_event(self, event: str, **data: Any) -> None:
        """Called for every event, before the specific ``on_<event>`` method."""


class Dispatcher:
    def __init__(self, callbacks: Sequence[Callback] = ()) -> None:
        self.callbacks = list(callbacks)

    def emit(self, event: str, **data: Any) -> None:
        for cb in self.callbacks:
            for fn in (cb.on_event, getattr(cb, f"on_{event}", None)):
                if fn is None:
                    continue
                try:
                    fn(event, **data) if fn == cb.on_event else fn(**data)
                except Exception:
                    log.exception("callback %s failed on %s", type(cb).__name__, event)


class EventLog(Callback):
    """Append every event as one JSON line (used for the run directory's events.jsonl)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def on_event(self, event: str, **data: Any) -> None:
        row = {"time": time.time(), "event": event}
        row.update({k: v for k, v in data.items() if _jsonable(v)})
        with open(self.path, "a") as fh:
            fh.write(json.dumps(row, default=str) + "\n")


def _jsonable(v: Any) -> bool:
    return isinstance(v, (str, int, float, bool, list, dict, type(None)))


class ProgressLine(Callback):
    """A one-line live status on stderr: iteration, best validation score, budget used."""

    def __init__(self, name: str, budget: int | None = None, stream: Any = None) -> None:
        self.name = name
        self.budget = budget
        self.stream = stream or sys.stderr

    def on_iteration_end(self, iteration: int, progress: Any, **_: Any) -> None:
        budget = f"/{self.budget}" if self.budget else ""
        self.stream.write(
            f"\r{self.name} it {iteration:>3} | best val {100 * progress.best_score:5.1f}% | "
            f"metric calls {progress.metric_calls}{budget} | LM calls {progress.lm_calls} | "
            f"{progress.seconds:6.0f}s   "
        )
        self.stream.flush()

    def on_run_end(self, result: Any, **_: Any) -> None:
        self.stream.write("\n" + result.summary() + "\n")
        self.stream.flush()
