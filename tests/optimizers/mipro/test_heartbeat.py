"""Heartbeats of a shared MIPROv2 study, in one process with two SharedStudy workers on SQLite."""

from __future__ import annotations

import threading
import time

import optuna
import pytest

from promptopt.optimizers.mipro.search import SharedStudy, StoppedWaitingError
from promptopt.optimizers.mipro.storage import Heartbeat


def _worker(tmp_path, **kw) -> SharedStudy:
    study = SharedStudy(
        f"sqlite:///{tmp_path / 'optuna.db'}",
        "hb",
        seed=0,
        num_trials=kw.pop("num_trials", 1),
        lock_path=tmp_path / "search.lock",
        heartbeat=Heartbeat(interval=1, grace_period=kw.pop("grace", 3)),
    )
    study.set_space({"x": 3})
    study.me.host = kw.pop("host", "here")  # workers on two machines: only heartbeats tell who is alive
    return study


def _beats() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("heartbeat-") and t.is_alive()]


def test_a_trial_beats_from_the_ask_and_stops_at_the_tell(tmp_path):
    a = _worker(tmp_path)
    trial = a.ask()
    assert trial is not None and len(_beats()) == 1
    assert a.tell(trial, 0.5, {}) is True
    assert _beats() == []


def test_a_worker_waiting_for_anothers_trial_stops_when_a_stopper_says_so(tmp_path):
    a, b = _worker(tmp_path, grace=30, host="a"), _worker(tmp_path, grace=30, host="b")
    held = a.ask()  # one trial in all, a's, and a is alive
    assert held is not None
    calls = []

    def stop():
        calls.append(time.time())
        return "time budget of 1 s spent" if len(calls) >= 2 else None

    with pytest.raises(StoppedWaitingError, match="time budget"):
        b.ask(stop)
    assert len(calls) == 2
    a.close()
    assert _beats() == []


def test_a_silent_trial_is_failed_and_its_slot_asked_again(tmp_path):
    a, b = _worker(tmp_path, host="a"), _worker(tmp_path, host="b")
    lost = a.ask()
    a._beats.pop(lost._trial_id).stop()  # a goes silent (as if its machine stopped), its trial open
    started = time.time()
    again = b.ask()  # waits until the grace period has passed, then takes the slot
    assert again is not None and time.time() - started >= 2
    assert again.user_attrs["slot"] == lost.user_attrs["slot"] == 0
    states = {t.number: t.state for t in b.study.get_trials(deepcopy=False)}
    assert states[lost.number] == optuna.trial.TrialState.FAIL
    # The silent worker comes back and tells its trial: refused, no crash, its slot is b's.
    assert a.tell(lost, 1.0, {}) is False
    assert b.tell(again, 0.25, {}) is True
    assert b.ask() is None
    b.close()
