"""The Node.js example app, started for real, driven through the proxy: its own prompt is replaced by
the candidate's in its LM calls, and GEPA finds the prompt that fixes its answers' format.

A scripted model stands behind the proxy here (it answers in one word only when told to), so the
test checks the protocol, the substitution and the search, not a model."""

import shutil

import pytest

from langprobe.task import mirror_dir
from promptopt.evaluate import evaluate
from promptopt.optimizers import GEPA
from promptopt.task_apps.program import TaskApp, rollout_score
from promptopt.testing import ScriptedLM, last_user_message
from tests.task_apps.node_app import TOKEN, running_node_app

pytestmark = [
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed"),
    pytest.mark.skipif(mirror_dir() is None, reason="no local data mirror (shared/data)"),
]


@pytest.fixture
def node_app():
    with running_node_app() as url:
        yield url


def botanist(messages):
    """Names the species from the petal length; in one word only when the system prompt asks for it."""
    petal = float(last_user_message(messages).split("petal length ")[1].split(" ")[0])
    species = "setosa" if petal < 2.5 else "versicolor" if petal < 4.9 else "virginica"
    return (
        species
        if "one word" in messages[0]["content"]
        else f"I believe this is Iris {species}, judging by the petals."
    )


def test_the_node_app_speaks_the_protocol_and_its_prompt_is_substituted(node_app):
    with TaskApp.connect(node_app, lm=ScriptedLM(botanist), token=TOKEN) as app:
        assert app.info.name == "iris-node" and list(app.info.components) == ["system_prompt"]
        splits = app.examples()
        assert (len(splits.train), len(splits.val), len(splits.test)) == (20, 20, 40)
        seed = evaluate(app.program(), splits.val, rollout_score, display_progress=False, num_threads=2)
        assert seed.score == 0.0 and "must be exactly one word" in seed.results[0].feedback
        fixed = app.program().with_components({"system_prompt": "Name the iris species in one word."})
        better = evaluate(fixed, splits.val, rollout_score, display_progress=False, num_threads=2)
        assert better.score > 0.8
        entry = better.results[0].trace[0]
        assert entry.messages[0]["content"] == "Name the iris species in one word."


def test_gepa_fixes_the_node_apps_prompt(node_app, tmp_path):
    def reflector(messages):
        return "```\nYou are a botanist. Answer with the iris species in one word.\n```"

    with TaskApp.connect(node_app, lm=ScriptedLM(botanist), token=TOKEN) as app:
        splits = app.examples()
        # 20 for the seed's validation, 26 for one proposal (two minibatches of 3 and a validation)
        gepa = GEPA(rollout_score, max_metric_calls=50, reflection_lm=ScriptedLM(reflector), progress=False)
        result = gepa.compile(app.program(), splits.train, splits.val, run_dir=tmp_path / "run")
        assert result.seed_score == 0.0 and result.best_score > 0.8
        assert "one word" in result.best_candidate.components["system_prompt"]


def test_the_node_app_is_a_langprobe_task_with_its_own_splits(node_app, tmp_path, monkeypatch, capsys):
    """``--task-app NAME=URL`` makes the app a task of the harness: baseline and GEPA cells, the
    app's splits cut to the run's sizes, the proxy answering with each cell's task LM."""
    from promptopt.bench import LMs, run_matrix
    from promptopt.bench.cli import main as bench_main
    from promptopt.bench.cli import spec_from_args
    from promptopt.bench.store import Store

    monkeypatch.setenv("PROMPTOPT_TASK_APP_TOKEN", TOKEN)
    out = tmp_path / "bench"
    args = [
        "langprobe",
        f"--task-app=iris-node={node_app}",
        "--optimizers=baseline,gepa",
        "--budget=30",
        "--sizes=8,8,12",
        f"--out={out}",
        "--num-threads=2",
    ]
    assert bench_main([*args, "--dry-run"]) == 0
    assert "iris-node__app__gepa__local__s0: to run" in capsys.readouterr().out
    from promptopt.bench.cli import build_parser

    spec = spec_from_args(build_parser().parse_args(args))
    fix = "You are a botanist. Answer with the iris species in one word."
    reflector = ScriptedLM(lambda m: f"```\n{fix}\n```")
    run_matrix(spec, lms=LMs(task=ScriptedLM(botanist), reflection=reflector), progress=False)
    cells = {c.config.optimizer: c for c in Store(out).cells()}
    base, gepa = cells["baseline"], cells["gepa"]
    assert [len(base.numbers.splits[s]) for s in ("train", "val", "test")] == [8, 8, 12]
    assert base.numbers.optimized_test.score == 0.0 and gepa.numbers.optimized_test.score > 0.8
    assert "one word" in gepa.numbers.components["system_prompt"]
    assert gepa.identity["data"]["source"]["task_app"] == "iris-node"


def test_a_task_app_url_must_be_http_and_the_flag_name_url():
    from promptopt.bench import ExperimentSpec, SpecError
    from promptopt.bench.cli import build_parser, spec_from_args

    with pytest.raises(SpecError, match="NAME=URL"):
        spec_from_args(build_parser().parse_args(["langprobe", "--task-app", "http://127.0.0.1:1"]))
    with pytest.raises(SpecError, match="http"):
        ExperimentSpec(tasks=["x"], task_apps={"x": "ftp://host"}).validate()
