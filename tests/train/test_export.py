"""SFT/RL export from an optimization result, the metric reward, and the local backend's bookkeeping."""

import hashlib
import json
import os
import time

import pytest

import promptopt as po
from promptopt.bench.records import CellConfig, CellRecord
from promptopt.bench.store import Store
from promptopt.optimizers.components import serialize_components
from promptopt.optimizers.result import Candidate, OptimizationResult
from promptopt.testing import ScriptedLM, field_value, last_user_message, toy_examples
from promptopt.train import (
    ExportedDataset,
    LocalBackend,
    MetricReward,
    TrainingJob,
    choose_candidates,
    export_rl,
    export_sft,
    resolve_metric,
)

SEED_INSTRUCTION = "Repeat the word."
BETTER = "Repeat the word in CAPITALS."


def metric(ex, pred, trace=None):
    return float(pred.out == ex.out)


def program():
    return po.Predict("word -> out", SEED_INSTRUCTION)


def lm():
    """Right (capitals) only under the optimized instruction, and then only for words before 'k'."""

    def reply(messages):
        word = field_value(last_user_message(messages), "word")
        good = BETTER in messages[0]["content"] and word < "k"
        return f"out: {word.upper() if good else word}"

    return ScriptedLM(reply)


def result_for(seed):
    comps = serialize_components(seed.components())
    better = dict(comps, **{"self.instruction": BETTER})
    return OptimizationResult(
        optimizer="gepa",
        candidates=[
            Candidate(0, comps, val_scores={"a": 0.0, "b": 0.0}),
            Candidate(1, better, parents=[0], origin="reflection", val_scores={"a": 1.0, "b": 0.0}),
            Candidate(2, better, parents=[0], origin="reflection", val_scores={"a": 1.0, "b": 1.0}),
        ],
        best_id=2,
        pareto_front=[2],
    )


def test_choose_candidates():
    res = result_for(program())
    assert choose_candidates(res, "best") == [2]
    assert choose_candidates(res, "front") == [2]
    assert choose_candidates(res, 2) == [2, 1]
    assert choose_candidates(res, [0, 1]) == [0, 1]
    with pytest.raises(ValueError, match="not in the result"):
        choose_candidates(res, [7])
    with pytest.raises(ValueError, match="k >= 1"):
        choose_candidates(res, 0)


def test_sft_keeps_only_passing_traces_with_the_optimized_prompt(tmp_path):
    seed = program()
    train = toy_examples(20)  # 10 words before 'k' pass under the optimized instruction
    data = export_sft(
        result_for(seed),
        seed,
        train,
        metric,
        tmp_path / "sft",
        lm=lm(),
        val_fraction=0.2,
        source={"run": "r1"},
    )
    rows = data.rows("train") + data.rows("val")
    assert len(rows) == 10
    assert data.n_train == 8 and data.n_val == 2
    for row in rows:
        system, user, assistant = row["messages"]
        assert system["role"] == "system" and BETTER in system["content"]
        word = field_value(user["content"], "word")
        assert assistant == {"role": "assistant", "content": f"out: {word.upper()}"}
    m = data.manifest
    assert m["kind"] == "sft" and m["source"]["run"] == "r1" and m["source"]["optimizer"] == "gepa"
    assert m["source"]["candidates"] == [{"id": 2, "val_score": 1.0, "origin": "reflection"}]
    assert m["counts"] == {
        "examples_run": 20,
        "runs_passing": 10,
        "runs_failed": 0,
        "rows": 10,
        "duplicates": 0,
        "train": 8,
        "val": 2,
    }
    for name, digest in m["files"].items():
        assert hashlib.sha256((data.path / name).read_bytes()).hexdigest() == digest
    # Provenance lines align with data lines.
    prov = [json.loads(x) for x in (data.path / "train.provenance.jsonl").read_text().splitlines()]
    assert [field_value(r["messages"][1]["content"], "word") for r in data.rows("train")] == [
        next(e.word for e in train if e.id == p["example_id"]) for p in prov
    ]
    assert ExportedDataset.load(data.path).to_dict() == data.to_dict()


def test_sft_seed_prompt_distills_the_optimized_instruction_away(tmp_path):
    seed = program()
    data = export_sft(
        result_for(seed), seed, toy_examples(20), metric, tmp_path / "d", lm=lm(), prompt="seed"
    )
    for row in data.rows("train"):
        system = row["messages"][0]["content"]
        assert SEED_INSTRUCTION in system and BETTER not in system
        word = field_value(row["messages"][1]["content"], "word")
        assert row["messages"][-1]["content"] == f"out: {word.upper()}"  # the optimized behaviour


def test_sft_dedups_and_splits_by_example(tmp_path):
    seed = program()
    # Candidates 1 and 2 share their prompt, so the second copy of every row is a duplicate.
    data = export_sft(
        result_for(seed), seed, toy_examples(20), metric, tmp_path / "d", lm=lm(), candidates=[1, 2]
    )
    assert data.manifest["counts"]["rows"] == 20 and data.manifest["counts"]["duplicates"] == 10
    train_ids = {
        json.loads(x)["example_id"] for x in (data.path / "train.provenance.jsonl").read_text().splitlines()
    }
    val_ids = {
        json.loads(x)["example_id"] for x in (data.path / "val.provenance.jsonl").read_text().splitlines()
    }
    assert train_ids and val_ids and not train_ids & val_ids


def test_sft_keeps_nothing_from_failing_examples(tmp_path):
    seed = program()

    def broken(messages):
        raise RuntimeError("server down")

    data = export_sft(result_for(seed), seed, toy_examples(4), metric, tmp_path / "d", lm=ScriptedLM(broken))
    assert data.n_train == 0 and data.manifest["counts"]["runs_failed"] == 4


def test_export_replaces_an_old_export_atomically(tmp_path):
    seed = program()
    out = tmp_path / "d"
    export_sft(result_for(seed), seed, toy_examples(20), metric, out, lm=lm())
    second = export_sft(result_for(seed), seed, toy_examples(4), metric, out, lm=lm(), val_fraction=0.0)
    assert second.n_train == 4 and ExportedDataset.load(out).n_train == 4
    assert [p.name for p in tmp_path.iterdir()] == ["d"]  # no temporary folders left


def test_sft_rows_load_in_trl_as_conversations(tmp_path):
    datasets = pytest.importorskip("datasets")
    trl_utils = pytest.importorskip("trl.data_utils")
    seed = program()
    data = export_sft(result_for(seed), seed, toy_examples(20), metric, tmp_path / "d", lm=lm())
    ds = datasets.load_dataset("json", data_files=str(data.train_file), split="train")
    assert len(ds) == data.n_train
    assert trl_utils.is_conversational(ds[0])


def test_rl_export_and_metric_reward(tmp_path):
    seed = program()
    data = export_rl(
        result_for(seed), seed, toy_examples(10), metric, tmp_path / "rl", lm=lm(), val_fraction=0.0
    )
    rows = data.rows("train")
    assert len(rows) == 10 and data.manifest["kind"] == "rl"
    row = rows[0]
    assert [m["role"] for m in row["prompt"]] == ["system", "user"] and BETTER in row["prompt"][0]["content"]
    assert row["reference"] == {"out": row["example"]["fields"]["word"].upper()}
    reward = MetricReward(metric, data.manifest["signatures"])
    word = row["example"]["fields"]["word"]
    completions = [
        [{"role": "assistant", "content": f"out: {word.upper()}"}],  # right
        [{"role": "assistant", "content": f"out: {word}"}],  # wrong
        [{"role": "assistant", "content": ""}],  # no parse
    ]
    examples = [json.dumps(row["example"])] * 3
    assert reward(
        prompts=[row["prompt"]] * 3, completions=completions, example=examples, predictor=["self"] * 3
    ) == [
        1.0,
        0.0,
        0.0,
    ]


def test_resolve_metric_specs():
    m = resolve_metric("exact:out")
    assert m(po.Example(out="A"), po.Prediction(out="a")).value == 1.0
    from langprobe import get_task
    from promptopt.testing import toy_examples as toy

    assert resolve_metric("promptopt.testing:toy_examples") is toy
    assert resolve_metric("task:iris") is get_task("iris").metric
    with pytest.raises(ValueError, match="Unknown metric spec"):
        resolve_metric("nonsense")


def test_training_job_validates():
    with pytest.raises(ValueError, match="kind must be"):
        TrainingJob(kind="dpo", data="x")
    with pytest.raises(ValueError, match="reward"):
        TrainingJob(kind="rl", data="x")
    job = TrainingJob(kind="sft", data="x")
    assert TrainingJob.from_dict(json.loads(json.dumps(job.to_dict()))) == job


def test_local_backend_bookkeeping(tmp_path, monkeypatch):
    """A different job in the same folder is refused; a worker that died reads as failed; finished
    jobs are not started again."""
    backend = LocalBackend(tmp_path)
    started = []

    class FakePopen:
        def __init__(self, cmd, **kwargs):
            started.append(cmd)
            self.pid = 999_999_999  # never a live process

    monkeypatch.setattr("promptopt.train.local.subprocess.Popen", FakePopen)
    job = TrainingJob(kind="sft", data=str(tmp_path / "data"))
    job_id = backend.submit(job, "j1")
    assert started[-1][-1] == str(tmp_path / "j1") and started[-1][1:3] == ["-m", "promptopt.train.worker"]
    st = backend.status(job_id)
    assert st.state == "failed" and "submit again to resume" in st.error
    with pytest.raises(ValueError, match="different job"):
        backend.submit(TrainingJob(kind="sft", data="other"), "j1")
    (tmp_path / "j1" / "model.json").write_text("{}")
    n = len(started)
    assert backend.submit(job, "j1") == "j1" and len(started) == n
    with pytest.raises(FileNotFoundError, match="No job"):
        backend.status("nope")


def test_local_backend_reports_a_failed_worker(tmp_path):
    """A real worker process on a job whose data folder does not exist fails with a clear error."""
    backend = LocalBackend(tmp_path)
    job_id = backend.submit(TrainingJob(kind="sft", data=str(tmp_path / "missing")), "bad")
    st = backend.wait(job_id, timeout=120)
    assert st.state == "failed" and "manifest.json" in st.error
    with pytest.raises(Exception, match="export a dataset"):
        backend.result(job_id)
    assert any("Traceback" in line for line in backend.logs(job_id))
    assert time.time() - os.path.getmtime(tmp_path / "bad" / "status.json") < 600


def test_cli_training_examples_never_touch_validation_or_test():
    from langprobe import get_task
    from promptopt.train.cli import training_examples

    task = get_task("iris")
    splits = task.splits(seed=0, sizes=[10, 10, 30])
    rows = training_examples(task, sizes=[10, 10, 30], split_seed=0, data_dir=None, extra=40)
    ids = [e.id for e in rows]
    assert ids[:10] == [e.id for e in splits.train] and len(ids) == len(set(ids)) == 50
    held = {e.id for e in splits.val} | {e.id for e in splits.test}
    assert not held & set(ids)


def test_cli_train_sft_from_a_cell_run(tmp_path, monkeypatch, capsys):
    """`promptopt train sft --from-run` reads the cell record, exports and submits (backend faked)."""
    from promptopt.cli import main

    out = tmp_path / "bench"
    run_dir = out / "runs" / "iris__predict__gepa__local__s0"
    run_dir.mkdir(parents=True)
    from langprobe import get_task

    seed = get_task("iris").program("predict")
    comps = serialize_components(seed.components())
    OptimizationResult("gepa", [Candidate(0, comps, val_scores={"a": 1.0})], best_id=0).save(
        run_dir / "result.json"
    )
    cfg = CellConfig("iris", "predict", "gepa", "scripted", seed=0, sizes=(10, 10, 30), split_seed=0)
    Store(out).save_cell(CellRecord(key=run_dir.name, status="failed", config=cfg))

    def species_lm(messages):
        return "species: setosa"

    monkeypatch.setattr("promptopt.LM", lambda *a, **k: ScriptedLM(species_lm))
    submitted = {}

    def fake_submit(self, job, job_id=None):
        submitted["job"], submitted["id"] = job, job_id
        return job_id

    monkeypatch.setattr("promptopt.train.local.LocalBackend.submit", fake_submit)
    rc = main(["train", "sft", "--from-run", str(run_dir), "--root", str(tmp_path / "jobs"), "--detach"])
    assert rc == 0
    data = ExportedDataset.load(submitted["job"].data)
    assert data.manifest["source"]["task"] == "iris" and data.manifest["counts"]["examples_run"] == 10
    assert data.n_train + data.n_val == data.manifest["counts"]["runs_passing"] > 0  # the setosa rows
    assert submitted["id"] == f"sft-{run_dir.name}" and "exported sft" in capsys.readouterr().out
