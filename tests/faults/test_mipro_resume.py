"""MIPROv2 under faults: a run killed anywhere resumes to the uninterrupted run's result, a finished
run resumed again changes nothing, and damaged state files stop the run with an error naming them."""

import copy
import json
import random
import signal
import subprocess
import sys
import threading

import optuna
import pytest

from promptopt.optimizers import Callback, MIPROv2
from promptopt.optimizers.components import serialize_components
from promptopt.testing import InterruptAfter, Killed, ScriptedLM, toy_examples, toy_proposer, toy_reply
from promptopt.testing import toy_metric as metric
from promptopt.testing import toy_program as program

TRAIN = toy_examples(6)
VAL = toy_examples(8, offset=10)


@pytest.fixture
def where(memory_path):
    """In memory where the machine has it: a run commits to its SQLite study some 500 times, which
    on a disk costs seconds per run and minutes for the kill tests."""
    return memory_path


def task_lm():
    """Deterministic but input-dependent, so that instructions, demo sets and minibatches all matter."""
    return ScriptedLM(toy_reply)


class Ticker:
    """Counts metric and proposer calls of one compile; raises Killed at call ``kill_at``."""

    def __init__(self, kill_at=None):
        self.kill_at = kill_at
        self.kinds = []
        self.lock = threading.Lock()

    @property
    def n(self):
        return len(self.kinds)

    def tick(self, kind):
        with self.lock:
            self.kinds.append(kind)
            if len(self.kinds) == self.kill_at:
                raise Killed()

    def metric(self, ex, pred, trace=None):
        self.tick("metric")
        return metric(ex, pred, trace)

    def proposer(self):
        return toy_proposer(before=lambda: self.tick("proposer"))


class Phases(Callback):
    """The call count at every event, to tell afterwards which phase each call belonged to."""

    def __init__(self, ticker):
        self.ticker, self.seen = ticker, []

    def on_event(self, name, event):
        self.seen.append((name, self.ticker.n))


def compile_run(run_dir, *, kill_at=None, resume=False, callbacks=(), **kw):
    ticker = Ticker(kill_at)
    opts = dict(
        num_candidates=4,
        num_trials=14,  # past TPE's 10 random startup trials, so its model-based draws are covered
        minibatch_size=3,
        minibatch_full_eval_steps=4,
        max_bootstrapped_demos=1,
        max_labeled_demos=1,
        num_threads=2,
        progress=False,
        seed=5,
    )
    opts.update(kw)
    phases = Phases(ticker)
    opt = MIPROv2(ticker.metric, proposer_lm=ticker.proposer(), callbacks=[phases, *callbacks], **opts)
    res = opt.compile(program(), TRAIN, VAL, lm=task_lm(), run_dir=run_dir, resume=resume)
    return res, ticker, phases


def snapshot(res, run_dir):
    """Everything a run decided, minus timings."""
    data = res.to_dict()
    data["budget"].pop("seconds")
    data["budget"].pop("seconds_by_phase")
    study = optuna.load_study(study_name="mipro", storage=f"sqlite:///{run_dir / 'optuna.db'}")
    trials = [
        (t.number, t.params, t.value, t.user_attrs["scores"], t.user_attrs["metric_calls"])
        for t in study.trials
        if t.state.name == "COMPLETE"
    ]
    fulls = {
        k: {f: v[f] for f in ("params", "val_scores", "metric_calls", "kind", "trials_done")}
        for k, v in study.user_attrs.items()
        if k.startswith("full:")
    }
    program = serialize_components(res.best_program.components())
    return {"result": data, "trials": trials, "fulls": fulls, "program": program}


def phase_of_calls(ticker, phases):
    """Per call (1-based): setup (bootstrapping, the seed's evaluation), proposals, trial or full."""
    first_proposal = ticker.kinds.index("proposer") + 1
    out = {}
    for i, kind in enumerate(ticker.kinds, start=1):
        if kind == "proposer":
            out[i] = "proposals"
        elif i < first_proposal:
            out[i] = "setup"
        else:
            event = next(
                e for e, n in phases.seen if n >= i and e in ("minibatch_evaluated", "val_evaluated")
            )
            out[i] = "trial" if event == "minibatch_evaluated" else "full"
    return out


def test_ten_random_kills_each_resume_to_the_uninterrupted_run(where):
    full, ticker, phases = compile_run(where / "full")
    expected = snapshot(full, where / "full")
    assert len(expected["trials"]) == 14 and len(full.candidates) >= 4
    assert len({json.dumps(t[1], sort_keys=True) for t in expected["trials"]}) > 4

    by_phase = {}
    for call, phase in phase_of_calls(ticker, phases).items():
        by_phase.setdefault(phase, []).append(call)
    rng = random.Random(20240611)
    quotas = {"setup": 2, "proposals": 2, "trial": 3, "full": 3}
    kills = sorted(
        (call, phase) for phase, k in quotas.items() for call in rng.sample(sorted(by_phase[phase]), k)
    )
    assert len(kills) == 10

    differing = []
    for call, phase in kills:
        run_dir = where / f"kill-{call}"
        with pytest.raises(Killed):
            compile_run(run_dir, kill_at=call)
        resumed, _, _ = compile_run(run_dir, resume=True)
        got = snapshot(resumed, run_dir)
        if got != expected:
            diff = sorted(k for k in expected if got[k] != expected[k])
            differing.append((call, phase, diff))
    assert differing == [], f"{len(differing)} of 10 resumed runs differ: {differing}"


def test_a_run_killed_twice_still_matches(where):
    full, ticker, phases = compile_run(where / "full", num_trials=6)
    expected = snapshot(full, where / "full")
    trial_calls = [c for c, p in phase_of_calls(ticker, phases).items() if p == "trial"]
    run_dir = where / "twice"
    with pytest.raises(Killed):
        compile_run(run_dir, kill_at=trial_calls[2], num_trials=6)
    with pytest.raises(Killed):
        compile_run(run_dir, kill_at=4, resume=True, num_trials=6)
    resumed, _, _ = compile_run(run_dir, resume=True, num_trials=6)
    assert snapshot(resumed, run_dir) == expected


SIGKILLED_WORKER = """
import importlib.util, json, os, signal, sys
from pathlib import Path
spec = importlib.util.spec_from_file_location("faults", {test_file!r})
faults = importlib.util.module_from_spec(spec)
spec.loader.exec_module(faults)
run_dir, kill_at = Path(sys.argv[1]), int(sys.argv[2])
tick = faults.Ticker.tick
def dying_tick(self, kind):
    if len(self.kinds) + 1 == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    tick(self, kind)
faults.Ticker.tick = dying_tick
faults.compile_run(run_dir, resume=kill_at == 0, num_trials=6)
"""


def test_a_sigkilled_process_resumes_in_another(where):
    """A real kill: the process is gone, its trial still RUNNING under its pid."""
    full, ticker, phases = compile_run(where / "full", num_trials=6)
    trial_calls = [c for c, p in phase_of_calls(ticker, phases).items() if p == "trial"]
    script = where / "worker.py"
    script.write_text(SIGKILLED_WORKER.format(test_file=__file__))
    run_dir = where / "sigkill"
    died = subprocess.run([sys.executable, str(script), str(run_dir), str(trial_calls[3])])
    assert died.returncode == -signal.SIGKILL
    resumed = subprocess.run([sys.executable, str(script), str(run_dir), "0"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    saved = json.loads((run_dir / "result.json").read_text())
    expected = copy.deepcopy(full.to_dict())
    for data in (saved, expected):
        data["budget"].pop("seconds")
        data["budget"].pop("seconds_by_phase")
        for row in data["trials"]:
            row.pop("worker")  # the process that ran it
    assert saved == expected


def test_a_trial_failed_by_hand_leaves_its_place_to_the_next(where):
    """A trial marked failed (as one abandoned on another host must be) does not shift the
    minibatches and draws of the trials after it: the next trial takes its place in the run."""
    full, ticker, phases = compile_run(where / "full", num_trials=6)
    trial_calls = [c for c, p in phase_of_calls(ticker, phases).items() if p == "trial"]
    run_dir = where / "failed"
    with pytest.raises(Killed):
        compile_run(run_dir, kill_at=trial_calls[4], num_trials=6)
    study = optuna.load_study(study_name="mipro", storage=f"sqlite:///{run_dir / 'optuna.db'}")
    (running,) = [t for t in study.trials if t.state.name == "RUNNING"]
    study.tell(running.number, state=optuna.trial.TrialState.FAIL)
    resumed, _, _ = compile_run(run_dir, resume=True, num_trials=6)

    def without_numbers(res):
        data = copy.deepcopy(res.to_dict())
        data["budget"].pop("seconds")
        data["budget"].pop("seconds_by_phase")
        for row in data["trials"]:
            row.pop("number")
        return data

    assert without_numbers(resumed) == without_numbers(full)
    assert [t["number"] for t in resumed.trials] == [n for n in range(7) if n != running.number]


@pytest.mark.parametrize("budget", [None, 60], ids=["no-budget", "budget-60"])
def test_resuming_a_finished_run_changes_nothing(where, budget):
    run_dir = where / "r"
    kw = dict(num_trials=30, max_metric_calls=budget) if budget else dict(num_trials=6)
    first, _, _ = compile_run(run_dir, **kw)
    if budget:
        assert "budget of 60" in first.stop_reason and first.budget.metric_calls <= 60
    expected = snapshot(first, run_dir)
    for _ in range(2):
        again, ticker, _ = compile_run(run_dir, resume=True, **kw)
        assert ticker.kinds == []  # nothing evaluated, nothing proposed
        assert again.budget.metric_calls == first.budget.metric_calls
        assert snapshot(again, run_dir) == expected
    saved = json.loads((run_dir / "result.json").read_text())
    assert saved["budget"]["metric_calls"] == first.budget.metric_calls


def test_an_interrupted_run_resumes_to_the_uninterrupted_one(where):
    full, _, _ = compile_run(where / "full", num_trials=6)
    first, _, _ = compile_run(where / "r", num_trials=6, callbacks=[InterruptAfter(2)])
    assert first.stop_reason == "interrupted (Ctrl-C)"
    resumed, _, _ = compile_run(where / "r", num_trials=6, resume=True)
    assert snapshot(resumed, where / "r") == snapshot(full, where / "full")


# --- damaged state files ------------------------------------------------------------------------


@pytest.fixture
def finished(where):
    run_dir = where / "r"
    compile_run(run_dir, num_trials=3)
    return run_dir


def _resume_fails(run_dir, *what):
    with pytest.raises(ValueError) as info:
        compile_run(run_dir, resume=True, num_trials=3)
    message = str(info.value)
    for part in what:
        assert part in message, message
    assert "resume=False" in message and "aside" in message, message
    return message


def test_garbled_optuna_db_is_named_not_a_traceback(finished):
    db = finished / "optuna.db"
    db.write_bytes(bytes(random.Random(0).randrange(256) for _ in range(4096)))
    _resume_fails(finished, str(db), "not a readable Optuna database")


def test_optuna_db_damaged_inside_is_named(finished):
    db = finished / "optuna.db"
    data = bytearray(db.read_bytes())
    for i in range(200, len(data), 7):  # keep SQLite's header, break its pages
        data[i] = (data[i] * 31 + 17) % 256
    db.write_bytes(bytes(data))
    _resume_fails(finished, str(db))


def test_zero_byte_optuna_db_is_damage_when_other_state_is_there(finished):
    db = finished / "optuna.db"
    db.write_bytes(b"")
    _resume_fails(finished, str(db), "empty")


def test_a_lost_optuna_db_or_search_space_json_is_damage_not_a_new_start(finished):
    (finished / "optuna.db").rename(finished / "optuna.db.away")
    _resume_fails(finished, str(finished / "optuna.db"), "missing, while")
    (finished / "optuna.db.away").rename(finished / "optuna.db")
    (finished / "search_space.json").unlink()
    _resume_fails(finished, str(finished / "search_space.json"), "missing, while", "3 trial(s)")


def test_zero_byte_optuna_db_alone_is_a_fresh_start(where):
    run_dir = where / "r"
    run_dir.mkdir()
    (run_dir / "optuna.db").write_bytes(b"")
    res, _, _ = compile_run(run_dir, resume=True, num_trials=3)
    assert len(res.trials) == 3


@pytest.mark.parametrize(
    "content, what",
    [
        (lambda text: text[: len(text) // 2], "not valid JSON"),
        (lambda text: "", "not valid JSON"),
        (lambda text: json.dumps({"version": 1, "predictors": ["self"]}), "missing"),
        (lambda text: "[1, 2]", "not a MIPROv2 search space"),
    ],
    ids=["truncated", "empty", "fields-missing", "not-an-object"],
)
def test_damaged_search_space_json_is_named(finished, content, what):
    path = finished / "search_space.json"
    path.write_text(content(path.read_text()))
    _resume_fails(finished, str(path), what)


def test_damaged_files_are_replaced_by_a_fresh_run(finished):
    (finished / "optuna.db").write_bytes(b"\x00garbage" * 300)
    (finished / "search_space.json").write_text("{")
    res, _, _ = compile_run(finished, num_trials=3)  # resume=False: start over
    assert len(res.trials) == 3
    assert (
        json.loads((finished / "search_space.json").read_text())["instructions"]["self"][0]
        == "Repeat the word."
    )
