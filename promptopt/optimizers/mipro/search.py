"""The search over combinations: an Optuna study that any number of workers share.

What lives where:

* trials — one per minibatch evaluation, with their per-example scores, metric
  calls and LM usage as trial user attributes;
* full evaluations — study user attributes ``full:<combination>`` holding the
  per-example validation scores, written once per combination;
* claims — ``claim:<combination>`` attributes that reserve a full evaluation
  for one worker, so no combination is fully evaluated twice.

Asking for a trial and claiming a full evaluation happen under a file lock in
the run directory (``search.lock``), so workers never exceed ``num_trials`` and
never race on a claim. Workers must therefore share the run directory; the
storage can be any Optuna RDB URL. Without a run directory the study is in
memory and the lock is a thread lock.

Resumes repeat the uninterrupted run. Each trial has a *slot*, its place in the
run (0, 1, ...): its minibatch and every random draw of its combination follow
from the seed and the slot alone (:class:`SlotSampler`), never from a random
stream that lives as long as a process. A trial left running by a worker that
is gone (same host, process gone), interrupted or killed, is taken over by the
next ask and redone under its own number, slot and combination, so it is
neither lost nor counted twice. On a storage with heartbeats (every RDB storage
unless turned off), a trial whose heartbeat went silent, whatever host ran it,
is failed through Optuna and its slot redone. A claim left behind is simply
taken again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.study import Study
from optuna.trial import FrozenTrial, Trial, TrialState

from promptopt.io import file_lock
from promptopt.optimizers.mipro.full_evaluation import FullEvaluation
from promptopt.optimizers.mipro.heartbeat import (
    TrialHeartbeat,
    fail_stale_trials,
    heartbeat_interval,
    quiet_heartbeat_warnings,
)
from promptopt.optimizers.mipro.storage import Heartbeat, open_storage

log = logging.getLogger("promptopt")

FULL = "full:"
CLAIM = "claim:"
END = "end"


def combo_key(params: dict[str, int]) -> str:
    return json.dumps({k: int(v) for k, v in params.items()}, sort_keys=True)


def derived_seed(*parts: Any) -> int:
    """A 32-bit seed that depends on ``parts`` only (not on Python's per-process string hashing)."""
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:4], "big")


def slot_of(trial: FrozenTrial | Trial) -> int:
    """The trial's place in the run (trials saved before slots were recorded: their number)."""
    return int(trial.user_attrs.get("slot", trial.number))


class SlotSampler(optuna.samplers.BaseSampler):
    """Multivariate TPE whose random draws for a trial follow from the run's seed and the trial's slot.

    A ``TPESampler(seed=...)`` draws from one random stream for the life of the process: a resumed
    run starts that stream over and so picks other combinations than the uninterrupted run did from
    the same completed trials. Here each draw comes from a TPE seeded for that slot (and parameter),
    made for the draw, so the same completed trials give the same next combination in any process.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def _tpe(self, *parts: Any) -> optuna.samplers.TPESampler:
        return optuna.samplers.TPESampler(seed=derived_seed(self.seed, *parts), multivariate=True)

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._tpe("space").infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._tpe("slot", slot_of(trial)).sample_relative(study, trial, search_space)

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        # Seeded per parameter too: one stream per trial would give same-sized dimensions the same
        # index, and a redone trial that lost some of its draws would get the others wrong.
        tpe = self._tpe("slot", slot_of(trial), param_name)
        return tpe.sample_independent(study, trial, param_name, param_distribution)


class Identity:
    """Who runs a trial: host, process and this run's token (one process may compile twice).

    ``$PROMPTOPT_WORKER_HOST`` names the host when the machine's own name is shared (containers
    started from one image) or when a test plays a worker on another machine."""

    def __init__(self) -> None:
        self.host = os.environ.get("PROMPTOPT_WORKER_HOST") or socket.gethostname()
        self.pid = os.getpid()
        self.token = uuid.uuid4().hex[:12]

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "pid": self.pid, "token": self.token}

    def gone(self, other: dict[str, Any] | None) -> bool:
        """Whether the worker ``other`` has certainly stopped (only known on this host)."""
        if not other or other.get("released"):
            return True
        if other.get("host") != self.host:
            return False  # another machine: assume it is alive
        if other.get("pid") == self.pid:
            return other.get("token") != self.token  # an earlier run in this process
        try:
            os.kill(int(other["pid"]), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


class StoppedWaitingError(Exception):
    """A worker stopped waiting for other workers' trials: a stopper gave ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SharedStudy:
    """Trials and full evaluations of one MIPROv2 run, in an Optuna study."""

    def __init__(
        self,
        storage_url: str | None,
        study_name: str,
        *,
        seed: int,
        num_trials: int,
        lock_path: Path | None,
        heartbeat: Heartbeat | None = None,
    ) -> None:
        self.num_trials = num_trials
        self._beats: dict[int, TrialHeartbeat] = {}
        self.me = Identity()
        self.lock_path = lock_path
        self._thread_lock = threading.RLock()
        self._depth = 0
        self.distributions: dict[str, CategoricalDistribution] = {}
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with self.lock():  # creating the storage's tables is not safe to race
            self.study = optuna.create_study(
                storage=open_storage(storage_url, heartbeat),
                study_name=study_name,
                direction="maximize",
                load_if_exists=True,
                sampler=SlotSampler(seed),
            )
        self.beat_seconds = heartbeat_interval(self.study._storage)

    def set_space(self, sizes: dict[str, int]) -> None:
        """The search dimensions (known once the search space is loaded or built)."""
        self.distributions = {k: CategoricalDistribution(list(range(n))) for k, n in sizes.items()}

    def contents(self) -> tuple[int, int]:
        """(trials, full evaluations) recorded, reading every row, so an unreadable storage fails
        here, at the start, rather than in the middle of the run."""
        trials = self.study.get_trials(deepcopy=False)
        for t in trials:
            _ = (t.params, t.user_attrs, t.values)
        fulls = 0
        for key, data in self.study.user_attrs.items():
            if key.startswith(FULL):
                try:
                    FullEvaluation.from_dict(data)
                except (ValueError, TypeError, AttributeError) as exc:
                    raise ValueError(
                        f"the full evaluation record {key[len(FULL) :]} is incomplete ({exc})"
                    ) from exc
                fulls += 1
        return len(trials), fulls

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """The run-wide lock, re-entrant within this process (a second OS lock on the same file
        would wait for ourselves)."""
        with self._thread_lock:
            if self.lock_path is None or self._depth > 0:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            with file_lock(self.lock_path):
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1

    # --- trials --------------------------------------------------------------
    def counted(self) -> int:
        """Trials that count toward ``num_trials``: finished or in progress."""
        states = (TrialState.COMPLETE, TrialState.RUNNING)
        return len(self.study.get_trials(deepcopy=False, states=states))

    def abandoned(self) -> list[FrozenTrial]:
        """Running trials whose worker is gone or let them go, oldest first."""
        running = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        return sorted(
            (t for t in running if self.me.gone(t.user_attrs.get("worker"))), key=lambda t: t.number
        )

    def _free_slot(self, number: int) -> int:
        states = (TrialState.COMPLETE, TrialState.RUNNING)
        taken = {
            slot_of(t) for t in self.study.get_trials(deepcopy=False, states=states) if t.number != number
        }
        return next(i for i in range(len(taken) + 1) if i not in taken)

    def ask(self, stop_reason: Callable[[], str | None] = lambda: None) -> Trial | None:
        """The next trial, or None when ``num_trials`` are done (or running, without heartbeats).

        An abandoned trial comes first, as it was: same number, slot and combination. A new one
        takes the lowest free slot (a failed trial frees its slot for the next), and its
        combination is drawn only once the slot is recorded, since the draw depends on it. With
        heartbeats, a trial whose worker went silent (on any host) is failed, and its slot redone;
        so while other workers' trials run, this worker waits for them to end or go silent, and
        the last worker to finish has seen all ``num_trials`` complete. While it waits it asks
        ``stop_reason()``; a reason ends the wait with :class:`StoppedWaitingError`.
        """
        while True:
            with self.lock():
                if self.beat_seconds is not None:
                    fail_stale_trials(self.study)
                left = self.abandoned()
                if left:
                    trial = Trial(self.study, left[0]._trial_id)
                elif self.counted() < self.num_trials:
                    with quiet_heartbeat_warnings():
                        trial = self.study.ask()
                elif self.beat_seconds is not None and self._others_running():
                    trial = None
                else:
                    return None
                if trial is not None:
                    if self.beat_seconds is not None:
                        # The first beat before anything else: a trial with no heartbeat at all is
                        # never taken for stale by Optuna, so a worker killed right after asking
                        # would leave one that blocks every other worker.
                        self.study._storage.record_heartbeat(trial._trial_id)  # type: ignore[attr-defined]
                    if "slot" not in trial.user_attrs:
                        trial.set_user_attr("slot", self._free_slot(trial.number))
                    trial.set_user_attr("worker", self.me.to_dict())
                    for name, dist in self.distributions.items():
                        trial.suggest_categorical(name, dist.choices)  # a drawn parameter is kept
                    if self.beat_seconds is not None:
                        beat = TrialHeartbeat(self.study._storage, trial._trial_id, self.beat_seconds)
                        self._beats[trial._trial_id] = beat.start()
                    return trial
            reason = stop_reason()
            if reason:
                raise StoppedWaitingError(reason)
            time.sleep(min(5.0, self.beat_seconds or 5.0))

    def close(self) -> None:
        """Stop every heartbeat this worker still records (its run is over)."""
        for trial_id in list(self._beats):
            self._beats.pop(trial_id).stop()

    def _others_running(self) -> bool:
        running = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        return any((t.user_attrs.get("worker") or {}).get("token") != self.me.token for t in running)

    def _stop_beat(self, trial: Trial) -> None:
        beat = self._beats.pop(trial._trial_id, None)
        if beat is not None:
            beat.stop()

    def tell(self, trial: Trial, value: float, attrs: dict[str, Any]) -> bool:
        """Record the trial's result; False when it was failed meanwhile (its heartbeat went
        silent past the grace period, e.g. a stalled machine) and its slot is another's now."""
        try:
            for k, v in attrs.items():
                trial.set_user_attr(k, v)
            self.study.tell(trial, value)
        except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError, ValueError) as exc:
            if self.study._storage.get_trial(trial._trial_id).state != TrialState.FAIL:
                raise
            log.warning(
                "trial %s was failed as stale before it was told; its slot is redone (%s)", trial.number, exc
            )
            return False
        finally:
            self._stop_beat(trial)
        return True

    def let_go(self, trial: Trial) -> None:
        """Leave an unfinished trial to the next ask (of any worker), which redoes it."""
        self._stop_beat(trial)
        with contextlib.suppress(Exception):  # a finished trial refuses the change, as it should
            trial.set_user_attr("worker", {"released": True})

    def completed(self) -> list[FrozenTrial]:
        trials = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        return sorted(trials, key=lambda t: t.number)

    # --- full evaluations ----------------------------------------------------
    def full_evals(self) -> dict[str, FullEvaluation]:
        """Combination key -> its full evaluation, for every one recorded."""
        attrs = self.study.user_attrs
        return {k[len(FULL) :]: FullEvaluation.from_dict(v) for k, v in attrs.items() if k.startswith(FULL)}

    def claimed(self, key: str) -> bool:
        """Whether a live worker holds the full evaluation of this combination."""
        held = self.study.user_attrs.get(CLAIM + key)
        return bool(held and held.get("active") and not self.me.gone(held.get("worker")))

    def claims(self) -> dict[str, dict[str, Any]]:
        attrs = self.study.user_attrs
        return {k[len(CLAIM) :]: v for k, v in attrs.items() if k.startswith(CLAIM)}

    def claim(self, key: str, kind: str, basis: int) -> bool:
        """Reserve the full evaluation of a combination, picked from ``basis`` completed trials;
        False if done or held by a live worker."""
        with self.lock():
            if FULL + key in self.study.user_attrs or self.claimed(key):
                return False
            held = {"active": True, "kind": kind, "basis": basis, "worker": self.me.to_dict()}
            self.study.set_user_attr(CLAIM + key, held)
            return True

    def release(self, key: str) -> None:
        with contextlib.suppress(Exception), self.lock():
            self.study.set_user_attr(CLAIM + key, {"active": False})

    def record_full(self, key: str, full: FullEvaluation) -> None:
        with self.lock():
            self.study.set_user_attr(FULL + key, full.to_dict())
            self.study.set_user_attr(CLAIM + key, {"active": False})

    # --- the end -------------------------------------------------------------
    def end_mark(self) -> dict[str, Any] | None:
        """How the run last ended: ``{"reason", "trials_done"}``, or None if it never did."""
        mark = self.study.user_attrs.get(END)
        return mark if isinstance(mark, dict) else None

    def mark_end(self, reason: str, trials_done: int) -> None:
        with self.lock():
            self.study.set_user_attr(END, {"reason": reason, "trials_done": trials_done})


DEFAULT_MINIBATCH = 25
MIN_FITTED_MINIBATCH = 3


def fitted_minibatch_size(requested: int | None, n_val: int, budget: int | None, num_trials: int) -> int:
    """Validation examples per trial.

    ``requested`` when given; else 25, or less when a metric-call budget could not otherwise pay
    for ``num_trials`` trials besides two full evaluations (the seed's and the final one): with 15
    validation examples and 60 calls, 25-example trials (capped at 15) leave room for one trial,
    3-example ones for about ten. Never under 3 (noisier minibatches mislead the search more than
    fewer trials do). A function of the configuration only, so a resumed run and every worker agree.
    """
    size = DEFAULT_MINIBATCH if requested is None else requested
    if requested is None and budget is not None:
        size = min(size, max(MIN_FITTED_MINIBATCH, (budget - 2 * n_val) // max(1, num_trials)))
    return max(1, min(size, n_val))
