"""`promptopt optimize`: one run from a TOML config with dotted overrides, on a task or a task app."""

import json

import pytest

from langprobe.task import mirror_dir
from promptopt.bench.single_run import RunConfig, RunConfigError, optimize, with_overrides
from promptopt.cli import main
from promptopt.testing import ScriptedLM
from tests.bench.conftest import RULE, iris_reply

needs_mirror = pytest.mark.skipif(mirror_dir() is None, reason="no local data mirror (shared/data)")

CONFIG = """
optimizer = "gepa"
budget = 30
out = "{out}"

[program]
task = "iris"

[data]
sizes = [6, 6, 10]

[options]
minibatch_size = 3
"""


def reflector():
    return ScriptedLM(lambda m: f"```\n{RULE}: decide the species from the petal length and width.\n```")


def test_overrides_set_dotted_keys_as_toml_values():
    data = with_overrides(
        {"budget": 10, "options": {"a": 1}}, ["budget=40", "options.b=[1, 2]", "lm.task=local/large"]
    )
    assert data == {"budget": 40, "options": {"a": 1, "b": [1, 2]}, "lm": {"task": "local/large"}}
    with pytest.raises(RunConfigError, match="write KEY=VALUE"):
        with_overrides({}, ["budget"])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"program": {"task": "iris"}, "optimiser": "gepa"}, "Unknown key 'optimiser'"),
        ({"program": {"task": "iris"}, "optimizer": "gepaa"}, "optimizer = 'gepaa'"),
        ({"program": {}}, "needs task = NAME or task_app = URL"),
        ({"program": {"task": "iris", "task_app": "http://x"}}, "needs task = NAME or task_app = URL"),
        ({"program": {"task": "iris"}, "data": {"size": [1, 1, 1]}}, r"Unknown key data\.size"),
        ({"program": {"task": "iris"}, "budget": 0}, "positive number of metric calls"),
    ],
)
def test_a_bad_config_names_the_key(data, message):
    with pytest.raises(RunConfigError, match=message):
        RunConfig.from_dict(data)


@needs_mirror
def test_a_run_from_a_config_file_writes_its_result_and_resumes(tmp_path):
    (tmp_path / "run.toml").write_text(CONFIG.format(out=tmp_path / "out"))
    config = RunConfig.load(tmp_path / "run.toml", ["options.minibatch_size=2"])
    assert config.options == {"minibatch_size": 2} and config.data["sizes"] == [6, 6, 10]
    lms = {"task": ScriptedLM(iris_reply), "reflection": reflector()}
    summary = optimize(config, lms=lms)
    assert summary["test"]["n"] == 10 and summary["test"]["optimized"] > summary["test"]["seed"]
    assert RULE in summary["best_components"]["self.instruction"]
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["config"]["options"] == {"minibatch_size": 2} and "provenance" in saved
    assert (tmp_path / "out" / "run" / "result.json").exists()
    again = optimize(config, lms={"task": ScriptedLM(iris_reply), "reflection": reflector()})
    assert again["best_components"] == summary["best_components"]  # resumed from the run directory


def test_the_command_line_reports_a_bad_config(tmp_path, capsys):
    (tmp_path / "run.toml").write_text('optimizer = "gepa"\n[program]\n')
    assert main(["optimize", "--config", str(tmp_path / "run.toml")]) == 2
    assert "needs task = NAME or task_app = URL" in capsys.readouterr().err
    assert main(["optimize", "--set", "program.task=iris", "--set", "optimizer=nope"]) == 2


def test_a_run_against_a_task_app_by_url(tmp_path):
    import promptopt as po
    from promptopt.task_apps.server import serve, task_app
    from tests.task_apps.test_program import SYSTEM, app_code, model

    rows = [
        po.Example(_id=f"w{i}", word=w).with_inputs("word")
        for i, w in enumerate(["cat", "dog", "owl", "bee"])
    ]
    examples = {"train": rows[:2], "validation": rows[2:3], "test": rows[3:]}
    server = task_app("shout", app_code, examples=examples, components={"system": SYSTEM}, token="k")
    reflection = ScriptedLM(lambda m: "```\nRepeat the word in capitals.\n```")
    with serve(server) as running:
        data = {"program": {"task_app": running.url, "token": "k"}, "budget": 8, "out": str(tmp_path / "app")}
        summary = optimize(
            RunConfig.from_dict(data), lms={"task": ScriptedLM(model), "reflection": reflection}
        )
    assert summary["test"] == {**summary["test"], "n": 1, "seed": 0.0, "optimized": 1.0}
    assert summary["best_components"] == {"system": "Repeat the word in capitals."}
