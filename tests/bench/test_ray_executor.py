"""Bench cells in other processes. On a real Ray cluster (a head and a worker node, each started
with ``ray start``): the same cell results as the local executor, and a worker node killed mid-cell
loses no finished cell (Ray runs the lost cell again on the node left, from its run directory). In a
local process pool: the same cells too."""

from __future__ import annotations

import os
import threading

import pytest

from promptopt.bench import ExperimentSpec, run_matrix
from promptopt.bench.executors import RayExecutor
from promptopt.bench.local_ray import RAY, local_ray_cluster
from promptopt.bench.store import Store
from tests.bench.conftest import RULE, iris_reply
from tests.conftest import in_ci
from tests.services.openai_stub import openai_stub

if not RAY.exists() and in_ci():
    pytest.fail(
        "CI is set but Ray is not installed: scripts/setup.sh installs promptopt[ray].", pytrace=False
    )
pytestmark = pytest.mark.timeout(600)
needs_ray = pytest.mark.skipif(not RAY.exists(), reason="Ray is not installed (pip install 'promptopt[ray]')")


def stub_reply(messages):
    """The task LM of the bench tests' iris runs, and their reflector, behind one endpoint."""
    if messages[0]["role"] == "system":
        return iris_reply(messages)
    return f"```\n{RULE}: decide the species from the petal length and width.\n```"


def _spec(out) -> ExperimentSpec:
    return ExperimentSpec(
        tasks=["iris"],
        programs=["predict"],
        optimizers=["gepa"],  # one cell per seed: each computes its own baseline, none waits
        lms=["openai/iris-stub"],
        reflection_lm="openai/iris-stub",
        seeds=[0, 1],
        budget=30,
        sizes={"iris": (6, 6, 12)},
        num_threads=1,
        lm_cache="per_cell",
        out=str(out),
    ).validate()


def _numbers(out) -> dict:
    cells = {c.key: c for c in Store(out).cells()}
    assert cells and all(c.ok for c in cells.values()), [c.error for c in cells.values() if not c.ok]
    return {
        key: (
            c.numbers.optimized_test.scores,
            c.numbers.baseline_test.scores,
            dict(c.numbers.components),
            c.numbers.spending.metric_calls,
        )
        for key, c in cells.items()
    }


@needs_ray
def test_ray_cells_match_the_local_executor_and_survive_a_killed_worker_node(tmp_path, monkeypatch):
    with openai_stub(stub_reply, gate_open=True) as stub:
        env = {"OPENAI_API_BASE": stub.url, "OPENAI_API_KEY": "sk-stub"}
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        run_matrix(_spec(tmp_path / "local"), progress=False)
        local = _numbers(tmp_path / "local")
        assert len(local) == 2

        with local_ray_cluster({**env, "PROMPTOPT_CACHE_DIR": os.environ["PROMPTOPT_CACHE_DIR"]}) as cluster:
            spec = _spec(tmp_path / "ray")
            stub.gate.clear()  # hold every LM call, so both nodes are mid-cell when one dies
            outcome: dict = {}

            def run() -> None:
                try:
                    outcome["value"] = run_matrix(spec, executor=RayExecutor(cluster.address), progress=False)
                except BaseException as exc:
                    outcome["error"] = exc

            driver = threading.Thread(target=run)
            driver.start()
            stub.wait_for_waiting(2)  # one cell on each node, each inside an LM call
            assert cluster.kill_worker_node() >= 1
            stub.gate.set()
            driver.join(timeout=540)
            assert not driver.is_alive(), "the Ray run did not finish"
            assert "error" not in outcome, outcome.get("error")
            assert _numbers(tmp_path / "ray") == local  # every cell, the lost one run again
            # Nothing is left to run: a rerun reuses every stored cell.
            again = run_matrix(spec, executor=RayExecutor(cluster.address), progress=False)
            assert again.ran == [] and len(again.skipped) == 2


def test_a_local_process_pool_gives_the_same_cells(tmp_path, monkeypatch):
    from promptopt.bench.executors import LocalExecutor

    with openai_stub(stub_reply) as stub:
        monkeypatch.setenv("OPENAI_API_BASE", stub.url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-stub")
        run_matrix(_spec(tmp_path / "one"), progress=False)
        run_matrix(_spec(tmp_path / "pool"), executor=LocalExecutor(workers=2), progress=False)
    assert _numbers(tmp_path / "pool") == _numbers(tmp_path / "one")
