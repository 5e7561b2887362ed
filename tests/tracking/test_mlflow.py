"""The MLflow callback against a real local tracking store (SQLite), read back through MLflow's own
client: parameters, per-iteration metrics, the final scores and the artifacts."""

from __future__ import annotations

import json

import pytest

mlflow = pytest.importorskip("mlflow", reason="MLflow is not installed (pip install 'promptopt[mlflow]')")

from mlflow.tracking import MlflowClient  # noqa: E402

from promptopt.tracking import MLflowCallback  # noqa: E402
from tests.optimizers.gepa.test_gepa import run  # noqa: E402


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root with a SQLite store is ./mlruns
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_a_gepa_run_is_logged_and_reads_back(store, tmp_path):
    artifacts_at = tmp_path / "artifacts"
    callback = MLflowCallback(
        store,
        experiment="iris-caps",
        run_name="gepa-s1",
        tags={"team": "prompts"},
        artifact_location=str(artifacts_at),
    )
    result = run(tmp_path / "run", callbacks=[callback])

    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("iris-caps")
    (logged,) = client.search_runs([experiment.experiment_id])
    assert logged.info.run_name == "gepa-s1" and logged.info.status == "FINISHED"
    assert logged.data.tags["team"] == "prompts" and logged.data.tags["promptopt.optimizer"] == "gepa"
    assert logged.data.params["max_metric_calls"] == "60" and logged.data.params["proposer"] == "rules"
    assert logged.data.metrics["best_val_score"] == result.best_score == 1.0
    assert logged.data.metrics["seed_val_score"] == result.seed_score == 0.0
    assert logged.data.metrics["metric_calls"] == result.budget.metric_calls

    history = client.get_metric_history(logged.info.run_id, "best_val_score")
    steps = [m.step for m in history]
    assert len(history) >= 3 and steps == sorted(steps)  # the seed's, then one per iteration and the end
    assert history[0].value == 0.0 and history[-1].value == 1.0

    artifacts = {a.path for a in client.list_artifacts(logged.info.run_id)}
    assert artifacts == {"result.json", "best_components.json", "report.html"}
    assert len(list(artifacts_at.rglob("report.html"))) == 1  # where the experiment said
    folder = client.download_artifacts(logged.info.run_id, "", str(tmp_path / "downloaded"))
    best = json.loads((tmp_path / "downloaded" / "best_components.json").read_text())
    assert best == result.best_candidate.components
    page = (tmp_path / "downloaded" / "report.html").read_text()
    assert "<svg" in page and "rules +" in page  # the run page, with the proposals the callback saw
    assert folder


def test_an_interrupted_run_ends_killed(store, tmp_path):
    from promptopt.testing import ScriptedLM

    calls = {"n": 0}

    def reply(messages):
        calls["n"] += 1
        if calls["n"] == 12:
            raise KeyboardInterrupt
        return "out: word"

    callback = MLflowCallback(store, experiment="interrupted")
    result = run(tmp_path / "run", lm=ScriptedLM(reply), callbacks=[callback])
    assert "interrupted" in result.stop_reason
    assert callback.tracked_run().info.status == "KILLED"


def test_a_missing_mlflow_says_what_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    with pytest.raises(ImportError, match=r"pip install 'promptopt\[mlflow\]'"):
        MLflowCallback("sqlite:///x.db")
