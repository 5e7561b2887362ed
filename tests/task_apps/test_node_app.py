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
        gepa = GEPA(rollout_score, max_metric_calls=30, reflection_lm=ScriptedLM(reflector), progress=False)
        result = gepa.compile(app.program(), splits.train, splits.val, run_dir=tmp_path / "run")
        assert result.seed_score == 0.0 and result.best_score > 0.8
        assert "one word" in result.best_candidate.components["system_prompt"]
