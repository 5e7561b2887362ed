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
storage can be any Optuna RDB URL. A trial or claim left behind by a dead
worker (same host, process gone) is failed or released at the next start and
redone. Without a run directory the study is in memory and the lock is a
thread lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, Trial, TrialState

FULL = "full:"
CLAIM = "claim:"


def combo_key(params: dict[str, int]) -> str:
    return json.dumps({k: int(v) for k, v in params.items()}, sort_keys=True)


def default_storage(run_dir: Path | None) -> str | None:
    return f"sqlite:///{run_dir / 'optuna.db'}" if run_dir is not None else None


def open_storage(url: str | None) -> optuna.storages.BaseStorage:
    if url is None:
        return optuna.storages.InMemoryStorage()
    if url.startswith("sqlite"):
        # Several worker processes write one SQLite file: wait for its lock instead of failing.
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 120}})
    return optuna.storages.RDBStorage(url)


def delete_study(url: str, study_name: str) -> None:
    with contextlib.suppress(KeyError):
        optuna.delete_study(study_name=study_name, storage=open_storage(url))


class Identity:
    """Who runs a trial: host, process and this run's token (one process may compile twice)."""

    def __init__(self) -> None:
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.token = uuid.uuid4().hex[:12]

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "pid": self.pid, "token": self.token}

    def gone(self, other: dict[str, Any] | None) -> bool:
        """Whether the worker ``other`` has certainly stopped (only known on this host)."""
        if not other:
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


class SharedStudy:
    """Trials and full evaluations of one MIPROv2 run, in an Optuna study."""

    def __init__(
        self,
        storage_url: str | None,
        study_name: str,
        *,
        seed: int,
        num_trials: int,
        sizes: dict[str, int],
        lock_path: Path | None,
    ) -> None:
        self.num_trials = num_trials
        self.sizes = sizes
        self.me = Identity()
        self.lock_path = lock_path
        self._thread_lock = threading.RLock()
        self._depth = 0
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with self.lock():  # creating the storage's tables is not safe to race
            storage = open_storage(storage_url)
            probe = optuna.create_study(
                storage=storage, study_name=study_name, direction="maximize", load_if_exists=True
            )
            # Each worker samples with its own seed, so two workers do not propose the same startups.
            self.worker_index = int(probe.user_attrs.get("workers", 0))
            probe.set_user_attr("workers", self.worker_index + 1)
        sampler = optuna.samplers.TPESampler(seed=seed + self.worker_index, multivariate=True)
        self.study = optuna.load_study(study_name=study_name, storage=storage, sampler=sampler)
        self.distributions = {k: CategoricalDistribution(list(range(n))) for k, n in sizes.items()}

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """The run-wide lock (re-entrant within this process: flock on a second descriptor of
        the same file would wait for ourselves)."""
        with self._thread_lock:
            if self.lock_path is None or self._depth > 0:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self.lock_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.lock_path, "a+") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                    fcntl.flock(fh, fcntl.LOCK_UN)

    # --- trials --------------------------------------------------------------
    def reap(self) -> int:
        """Fail the running trials of workers that are gone, so they are run again."""
        n = 0
        with self.lock():
            for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                if self.me.gone(t.user_attrs.get("worker")):
                    self.study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
                    n += 1
        return n

    def counted(self) -> int:
        """Trials that count toward ``num_trials``: finished or in progress."""
        states = (TrialState.COMPLETE, TrialState.RUNNING)
        return len(self.study.get_trials(deepcopy=False, states=states))

    def ask(self) -> Trial | None:
        """The next trial, or None when ``num_trials`` are done or running."""
        with self.lock():
            if self.counted() >= self.num_trials:
                return None
            trial = self.study.ask(fixed_distributions=self.distributions)
            trial.set_user_attr("worker", self.me.to_dict())
            return trial

    def tell(self, trial: Trial, value: float, attrs: dict[str, Any]) -> None:
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        self.study.tell(trial, value)

    def fail(self, trial: Trial) -> None:
        with contextlib.suppress(Exception):
            self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)

    def completed(self) -> list[FrozenTrial]:
        trials = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        return sorted(trials, key=lambda t: t.number)

    # --- full evaluations ----------------------------------------------------
    def full_evals(self) -> dict[str, dict[str, Any]]:
        attrs = self.study.user_attrs
        return {k[len(FULL) :]: v for k, v in attrs.items() if k.startswith(FULL)}

    def claimed(self, key: str) -> bool:
        """Whether a live worker holds the full evaluation of this combination."""
        held = self.study.user_attrs.get(CLAIM + key)
        return bool(held and held.get("active") and not self.me.gone(held.get("worker")))

    def claims(self) -> dict[str, dict[str, Any]]:
        attrs = self.study.user_attrs
        return {k[len(CLAIM) :]: v for k, v in attrs.items() if k.startswith(CLAIM)}

    def claim(self, key: str, kind: str) -> bool:
        """Reserve the full evaluation of a combination; False if done or held by a live worker."""
        with self.lock():
            if FULL + key in self.study.user_attrs or self.claimed(key):
                return False
            self.study.set_user_attr(CLAIM + key, {"active": True, "kind": kind, "worker": self.me.to_dict()})
            return True

    def release(self, key: str) -> None:
        with contextlib.suppress(Exception), self.lock():
            self.study.set_user_attr(CLAIM + key, {"active": False})

    def record_full(self, key: str, data: dict[str, Any]) -> None:
        with self.lock():
            self.study.set_user_attr(FULL + key, data)
            self.study.set_user_attr(CLAIM + key, {"active": False})
