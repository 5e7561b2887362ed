"""MIPROv2 workers sharing one study in a real PostgreSQL server that the test starts: several
processes, a worker on "another host" killed mid-trial and its trial failed through Optuna's
heartbeat and redone, the same final choice as one uninterrupted worker, and a study that a fresh
run never overwrites."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest

from tests.conftest import in_ci
from tests.services.postgres import pg_bin, postgres_server

HERE = Path(__file__).parent

if pg_bin() is None and in_ci():
    pytest.fail(
        "CI is set but PostgreSQL is not installed: scripts/setup.sh installs Debian's postgresql "
        "package when it runs as root (apt-get install postgresql).",
        pytrace=False,
    )
pytestmark = [
    pytest.mark.skipif(pg_bin() is None, reason="PostgreSQL is not installed (apt-get install postgresql)"),
    pytest.mark.timeout(300),
]
psycopg2 = pytest.importorskip("psycopg2", reason="the PostgreSQL driver: pip install 'promptopt[postgres]'")

WORKER = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from test_mipro import data, mipro, proposer_lm, program, task_lm

    storage, study_name, run_dir, hang_at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    marker = Path(run_dir).parent / (study_name + ".hanging")

    from promptopt.optimizers import Callback

    class HangOnTrial(Callback):
        # Blocks for good when its hang_at-th trial starts (so its worker can be killed mid-trial).
        def __init__(self):
            self.started = 0
        def on_iteration_start(self, event):
            self.started += 1
            if self.started == hang_at:
                marker.write_text(str(os.getpid()))
                time.sleep(3600)

    res = mipro(num_trials=8, minibatch_full_eval_steps=3, storage=storage, study_name=study_name,
                heartbeat_interval=1, heartbeat_grace_period=3, callbacks=[HangOnTrial()]).compile(
        program(), data(6), data(8, offset=10), lm=task_lm(), run_dir=run_dir, resume=True)
    chosen = res.best_candidate
    print(json.dumps({{"best_components": chosen.components, "best_score": res.best_score,
                      "trials": len(res.trials), "candidates": len(res.candidates)}}))
    """
)


@pytest.fixture(scope="module")
def postgres():
    with postgres_server() as url:
        yield url


def _worker(tmp_path: Path, storage: str, study: str, run_dir: Path, *, host: str, hang_at: int = 0):
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(HERE)))
    env = {**os.environ, "PROMPTOPT_WORKER_HOST": host}
    return subprocess.Popen(
        [sys.executable, str(script), storage, study, str(run_dir), str(hang_at)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _finish(proc) -> dict:
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def _trials(storage: str, study: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)


def _by_slot(trials) -> dict[int, tuple[dict, float]]:
    return {
        t.user_attrs["slot"]: (dict(t.params), t.value)
        for t in trials
        if t.state == optuna.trial.TrialState.COMPLETE
    }


def test_three_workers_share_one_study(postgres, tmp_path):
    run_dir = tmp_path / "shared"
    procs = [_worker(tmp_path, postgres, "three", run_dir, host=f"host-{i}") for i in range(3)]
    results = [_finish(p) for p in procs]
    trials = _trials(postgres, "three")
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == len(trials) == 8  # exactly num_trials, none twice
    assert sorted(t.user_attrs["slot"] for t in complete) == list(range(8))
    assert len({t.user_attrs["worker"]["host"] for t in complete}) >= 2  # the workers shared them
    # Each worker waited for the others' trials, so every one ends on the same full evaluations.
    assert len({json.dumps(r["best_components"], sort_keys=True) for r in results}) == 1


def test_a_killed_worker_on_another_host_has_its_trial_failed_by_heartbeat_and_redone(postgres, tmp_path):
    # One worker, uninterrupted: the reference.
    alone = _finish(_worker(tmp_path, postgres, "alone", tmp_path / "alone", host="host-a"))

    # The same run, its worker killed (SIGKILL) in the middle of a trial; a worker on another host
    # (so no process check can tell the first one is dead) picks the run up.
    run_dir = tmp_path / "cut"
    marker = tmp_path / "cut.hanging"
    doomed = _worker(tmp_path, postgres, "cut", run_dir, host="host-a", hang_at=4)
    deadline = time.time() + 120
    while not marker.exists():
        assert doomed.poll() is None, doomed.communicate()[1][-3000:]
        assert time.time() < deadline, "the worker never reached the call it hangs on"
        time.sleep(0.2)
    running = [t for t in _trials(postgres, "cut") if t.state == optuna.trial.TrialState.RUNNING]
    assert len(running) == 1  # killed mid-trial
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait()

    rescued = _finish(_worker(tmp_path, postgres, "cut", run_dir, host="host-b"))
    trials = _trials(postgres, "cut")
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert [t.number for t in failed] == [running[0].number]  # failed through the heartbeat
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 8 and failed[0].user_attrs["slot"] in {t.user_attrs["slot"] for t in complete}
    # The killed trial's slot was redone: the same trials, slot by slot, and the same final choice.
    assert _by_slot(trials) == _by_slot(_trials(postgres, "alone"))
    assert rescued["best_components"] == alone["best_components"]
    assert rescued["best_score"] == alone["best_score"]


def test_a_fresh_run_never_overwrites_a_study(postgres, tmp_path):
    from promptopt.optimizers.mipro.run_files import StudyExistsError
    from tests.optimizers.mipro.test_mipro import data, mipro, program, task_lm

    kept = mipro(storage=postgres, study_name="kept", num_trials=2)
    kept.compile(program(), data(6), data(8, offset=10), lm=task_lm(), run_dir=tmp_path / "first")
    before = len(_trials(postgres, "kept"))
    again = mipro(storage=postgres, study_name="kept", num_trials=2)
    with pytest.raises(StudyExistsError, match=r"'kept' already exists in .*resume=True.*delete-study"):
        again.compile(program(), data(6), data(8, offset=10), lm=task_lm(), run_dir=tmp_path / "second")
    assert len(_trials(postgres, "kept")) == before == 2
