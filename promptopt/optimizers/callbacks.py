"""Callbacks: watch every step of an optimization run.

Each event is one typed dict (the ``*Event`` classes below) handed to the handler of the same
name: ``on_run_start(event: RunStartEvent)`` and so on. Subclass :class:`Callback` and override
the handlers you need; ``on_event(name, event)`` sees every event before its own handler. A
method named ``on_<something>`` that is no handler is a :class:`TypeError` when the class is
defined (or, for a callback that does not subclass :class:`Callback`, when a run is handed it),
so a misspelt handler never goes silently unused.

The events, in the order a run emits them:

* ``run_start``: the optimizer, its config, whether the run resumed a saved one.
* ``iteration_start`` / ``iteration_end``: one step of the search (a GEPA iteration, a MIPROv2
  trial); the end carries the run's :class:`~promptopt.optimizers.stoppers.Progress`.
* ``parent_selected``, ``minibatch_evaluated``, ``proposal``, ``candidate_rejected``, ``merge``:
  what a step did (GEPA; MIPROv2 reports its proposals and trial minibatches too).
* ``val_evaluated``: a candidate's validation score (``candidate_id`` is ``None`` for a MIPROv2
  combination, which ``params`` names); ``candidate_accepted``: a candidate joined the run.
* ``trial``: a finished MIPROv2 trial.
* ``run_end``: the :class:`~promptopt.optimizers.result.OptimizationResult`.

A callback that raises does not stop the run; the error is logged.
"""

from __future__ import annotations

import difflib
import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:
    from promptopt.optimizers.result import OptimizationResult
    from promptopt.optimizers.stoppers import Progress

log = logging.getLogger("promptopt")


class RunStartEvent(TypedDict):
    optimizer: str
    config: dict[str, Any]
    resumed: bool


class IterationStartEvent(TypedDict):
    iteration: int


class ParentSelectedEvent(TypedDict):
    iteration: int
    candidate_id: int
    front: list[int]


class MinibatchEvaluatedEvent(TypedDict):
    iteration: int
    candidate_id: int | None  # None: a MIPROv2 trial's combination
    example_ids: list[str]
    scores: list[float | None]  # None: the example could not be scored


class _ProposalDetails(TypedDict, total=False):
    raw: str | None  # the proposer LM's reply
    proposer: str | None  # which proposer of an adaptive one wrote it


class ProposalEvent(_ProposalDetails):
    iteration: int
    component: str | None  # None: no component was looked at in this iteration
    text: str | None  # None: nothing proposed
    accepted: bool
    reason: str


class CandidateAcceptedEvent(TypedDict):
    iteration: int
    candidate: dict[str, Any]  # Candidate.to_dict()


class _RejectedDetails(TypedDict, total=False):
    # "validation": rejected by a staged validation (scores are means over example_ids); absent:
    # on the minibatch (scores are sums).
    stage: str


class CandidateRejectedEvent(_RejectedDetails):
    iteration: int
    parent_id: int
    component: str
    parent_score: float
    child_score: float
    example_ids: list[str]


class MergeEvent(TypedDict):
    iteration: int
    ids: list[int]
    accepted: bool


class _ValEvaluatedDetails(TypedDict, total=False):
    params: dict[str, int]  # a MIPROv2 combination: parameter -> index


class ValEvaluatedEvent(_ValEvaluatedDetails):
    candidate_id: int | None
    score: float


class TrialEvent(TypedDict):
    trial: dict[str, Any]  # number, params, minibatch_score, scores, metric_calls


class IterationEndEvent(TypedDict):
    iteration: int
    progress: Progress


class RunEndEvent(TypedDict):
    result: OptimizationResult


# Event name -> its type; the handler is ``on_<name>``.
EVENTS: dict[str, type] = {
    "run_start": RunStartEvent,
    "iteration_start": IterationStartEvent,
    "parent_selected": ParentSelectedEvent,
    "minibatch_evaluated": MinibatchEvaluatedEvent,
    "proposal": ProposalEvent,
    "candidate_accepted": CandidateAcceptedEvent,
    "candidate_rejected": CandidateRejectedEvent,
    "merge": MergeEvent,
    "val_evaluated": ValEvaluatedEvent,
    "trial": TrialEvent,
    "iteration_end": IterationEndEvent,
    "run_end": RunEndEvent,
}
HANDLERS = frozenset({"on_event", *(f"on_{name}" for name in EVENTS)})


def check_handlers(callback: object) -> None:
    """Raise :class:`TypeError` when ``callback`` has an ``on_*`` method that is no handler."""
    cls = callback if isinstance(callback, type) else type(callback)
    for name in dir(cls):
        if name.startswith("on_") and name not in HANDLERS and callable(getattr(cls, name, None)):
            close = difflib.get_close_matches(name, sorted(HANDLERS), n=1)
            hint = f"; did you mean {close[0]}?" if close else f"; handlers: {', '.join(sorted(HANDLERS))}"
            raise TypeError(f"{cls.__name__}.{name} handles no event{hint}")


class Callback:
    """Base class: every handler is a no-op until overridden."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        check_handlers(cls)

    def on_event(self, name: str, event: Mapping[str, Any]) -> None:
        """Every event, before its own handler."""

    def on_run_start(self, event: RunStartEvent) -> None: ...

    def on_iteration_start(self, event: IterationStartEvent) -> None: ...

    def on_parent_selected(self, event: ParentSelectedEvent) -> None: ...

    def on_minibatch_evaluated(self, event: MinibatchEvaluatedEvent) -> None: ...

    def on_proposal(self, event: ProposalEvent) -> None: ...

    def on_candidate_accepted(self, event: CandidateAcceptedEvent) -> None: ...

    def on_candidate_rejected(self, event: CandidateRejectedEvent) -> None: ...

    def on_merge(self, event: MergeEvent) -> None: ...

    def on_val_evaluated(self, event: ValEvaluatedEvent) -> None: ...

    def on_trial(self, event: TrialEvent) -> None: ...

    def on_iteration_end(self, event: IterationEndEvent) -> None: ...

    def on_run_end(self, event: RunEndEvent) -> None: ...


class Dispatcher(Callback):
    """Hands each event to every callback of a run, in order; one that raises is logged and skipped."""

    def __init__(self, callbacks: Sequence[object] = ()) -> None:
        for cb in callbacks:
            check_handlers(cb)
        self.callbacks = list(callbacks)
        # One event at a time: proposals made in parallel report from several threads.
        self._lock = threading.RLock()

    def _notify(self, name: str, event: Mapping[str, Any]) -> None:
        with self._lock:
            self._notify_all(name, event)

    def _notify_all(self, name: str, event: Mapping[str, Any]) -> None:
        for cb in self.callbacks:
            for handler, args in (
                (getattr(cb, "on_event", None), (name, event)),
                (getattr(cb, f"on_{name}", None), (event,)),
            ):
                if handler is None:
                    continue
                try:
                    handler(*args)
                except Exception:
                    log.exception("callback %s failed on %s", type(cb).__name__, name)

    def on_run_start(self, event: RunStartEvent) -> None:
        self._notify("run_start", event)

    def on_iteration_start(self, event: IterationStartEvent) -> None:
        self._notify("iteration_start", event)

    def on_parent_selected(self, event: ParentSelectedEvent) -> None:
        self._notify("parent_selected", event)

    def on_minibatch_evaluated(self, event: MinibatchEvaluatedEvent) -> None:
        self._notify("minibatch_evaluated", event)

    def on_proposal(self, event: ProposalEvent) -> None:
        self._notify("proposal", event)

    def on_candidate_accepted(self, event: CandidateAcceptedEvent) -> None:
        self._notify("candidate_accepted", event)

    def on_candidate_rejected(self, event: CandidateRejectedEvent) -> None:
        self._notify("candidate_rejected", event)

    def on_merge(self, event: MergeEvent) -> None:
        self._notify("merge", event)

    def on_val_evaluated(self, event: ValEvaluatedEvent) -> None:
        self._notify("val_evaluated", event)

    def on_trial(self, event: TrialEvent) -> None:
        self._notify("trial", event)

    def on_iteration_end(self, event: IterationEndEvent) -> None:
        self._notify("iteration_end", event)

    def on_run_end(self, event: RunEndEvent) -> None:
        self._notify("run_end", event)


class EventLog(Callback):
    """Append every event as one JSON line (used for the run directory's events.jsonl)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def on_event(self, name: str, event: Mapping[str, Any]) -> None:
        row: dict[str, Any] = {"time": time.time(), "event": name}
        row.update({k: v for k, v in event.items() if _jsonable(v)})
        with open(self.path, "a") as fh:
            fh.write(json.dumps(row, default=str) + "\n")


def _jsonable(v: Any) -> bool:
    return isinstance(v, (str, int, float, bool, list, dict, type(None)))
