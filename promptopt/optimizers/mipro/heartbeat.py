"""A running trial's heartbeat, recorded in the study's storage while the trial runs.

Optuna records heartbeats itself only inside ``study.optimize``; MIPROv2 asks and tells trials one
at a time (workers pull them from a shared study), so it keeps the same record through the
storage's own ``record_heartbeat``, and lets :func:`optuna.storages.fail_stale_trials` fail the
trials whose heartbeat stopped.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import warnings
from collections.abc import Iterator

import optuna

log = logging.getLogger("promptopt")


def heartbeat_interval(storage: optuna.storages.BaseStorage) -> int | None:
    """The storage's heartbeat interval in seconds, or None when it records no heartbeats."""
    get = getattr(storage, "get_heartbeat_interval", None)
    return get() if callable(get) else None


class TrialHeartbeat:
    """Records ``trial_id``'s heartbeat every interval, from a daemon thread, until stopped."""

    def __init__(self, storage: optuna.storages.BaseStorage, trial_id: int, interval: int) -> None:
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{trial_id}", daemon=True)

    def _beat(self) -> None:
        while True:
            try:
                self.storage.record_heartbeat(self.trial_id)  # type: ignore[attr-defined]
            except Exception as exc:  # a missed beat is retried next interval, not a failed trial
                log.warning("could not record the heartbeat of trial %s: %s", self.trial_id, exc)
            if self._stop.wait(self.interval):
                return

    def start(self) -> TrialHeartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def fail_stale_trials(study: optuna.Study) -> None:
    """Fail the running trials whose heartbeat is older than the storage's grace period."""
    with quiet_heartbeat_warnings():
        optuna.storages.fail_stale_trials(study)


@contextlib.contextmanager
def quiet_heartbeat_warnings() -> Iterator[None]:
    """Optuna warns that heartbeats are experimental and meant for ``Study.optimize``; here they
    are used on purpose, with ask and tell, so those two warnings would only be noise."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        yield
