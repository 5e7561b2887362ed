"""A task app as a program: evaluate() runs rollouts through the proxy, the candidate's prompt reaches
the app's LM calls, and those calls come back as the example's trace."""

import json

import pytest

import promptopt as po
from promptopt.core.program import Program
from promptopt.evaluate import evaluate
from promptopt.task_apps.program import TaskApp, rollout_score
from promptopt.task_apps.server import RolloutOutcome, serve, task_app
from promptopt.testing import ScriptedLM, last_user_message

SYSTEM = "Repeat the word."


def app_code(example, components, inference):
    """The app's own code: its own prompt, its own LM call (through the proxy), its own scoring."""
    said = inference.chat([{"role": "system", "content": SYSTEM}, {"role": "user", "content": example.word}])
    return RolloutOutcome(float(said == example.word.upper()), f"said {said!r}", {"said": said})


def model(messages):
    word = last_user_message(messages)
    return word.upper() if "capitals" in messages[0]["content"] else word


@pytest.fixture
def app():
    rows = [
        po.Example(_id=f"w{i}", word=w).with_inputs("word")
        for i, w in enumerate(["cat", "dog", "owl", "bee"])
    ]
    examples = {"train": rows[:2], "validation": rows[2:3], "test": rows[3:]}
    server = task_app("shout", app_code, examples=examples, components={"system": SYSTEM}, token="k")
    with serve(server) as running, TaskApp.connect(running.url, lm=ScriptedLM(model), token="k") as connected:
        yield connected


def test_the_app_is_a_program_with_its_prompts_as_components(app):
    program = app.program()
    assert isinstance(program, Program) and program.components() == {"system": SYSTEM}
    assert set(program.text_components()) == {"system"}
    assert app.examples().ids() == {"train": ["w0", "w1"], "val": ["w2"], "test": ["w3"]}
    with pytest.raises(KeyError, match="the app's prompts are"):
        program.with_components({"nope": "x"})


def test_evaluate_runs_rollouts_and_the_candidate_prompt_reaches_the_apps_lm(app):
    examples = app.examples().train
    seed = evaluate(app.program(), examples, rollout_score, display_progress=False, num_threads=1)
    assert seed.score == 0.0 and seed.results[0].feedback == "said 'cat'"
    candidate = app.program().with_components({"system": "Repeat the word in capitals."})
    shouted = evaluate(candidate, examples, rollout_score, display_progress=False, num_threads=2)
    assert shouted.score == 1.0
    (entry,) = shouted.results[0].trace
    assert entry.predictor == "system" and entry.messages[0]["content"] == "Repeat the word in capitals."
    assert entry.raw == "CAT"


def test_a_failed_rollout_is_a_recorded_failure_and_a_down_app_is_an_outage(app):
    examples = [po.Example(_id="ghost", example_id="ghost", split="train").with_inputs("example_id", "split")]
    missing = evaluate(app.program(), examples, rollout_score, display_progress=False)
    assert missing.results[0].error and "no example 'ghost'" in missing.results[0].error
    assert missing.results[0].failure is None  # the app's answer: a failure of this example
    app.client.url = "http://127.0.0.1:9"
    down = evaluate(app.program(), app.examples().test, rollout_score, display_progress=False)
    assert down.results[0].failure == "LM" and len(down.unscored) == 1  # an outage, never a score


def test_gepa_optimizes_the_apps_prompt_through_the_proxy(app, tmp_path):
    from promptopt.optimizers import GEPA

    reflections = []

    def reflector(messages):
        reflections.append(messages[-1]["content"])
        return "```\nRepeat the word in capitals.\n```"

    splits = app.examples()
    gepa = GEPA(rollout_score, max_metric_calls=12, reflection_lm=ScriptedLM(reflector), progress=False)
    result = gepa.compile(app.program(), splits.train, splits.val, run_dir=tmp_path / "run")
    assert result.best_candidate.components == {"system": "Repeat the word in capitals."}
    assert result.best_score == 1.0 and result.seed_score == 0.0
    # The reflector saw the app's own LM call: the prompt it sent and the reply it got.
    assert reflections and "system: Repeat the word." in reflections[0] and "said 'cat'" in reflections[0]
    # A resumed run against the app gives the same result.
    again = gepa.compile(app.program(), splits.train, splits.val, run_dir=tmp_path / "run", resume=True)
    assert again.best_candidate.components == result.best_candidate.components


def test_a_run_against_the_app_killed_midway_resumes_to_the_uninterrupted_result(app, tmp_path):
    from promptopt.optimizers import GEPA
    from promptopt.testing import Killed, dies_at

    def reflector(messages):
        return "```\nRepeat the word in capitals.\n```"

    splits = app.examples()

    def gepa(metric):
        return GEPA(metric, max_metric_calls=12, reflection_lm=ScriptedLM(reflector), progress=False, seed=3)

    whole = gepa(rollout_score).compile(app.program(), splits.train, splits.val, run_dir=tmp_path / "whole")
    with pytest.raises(Killed):  # killed on its third rollout, after the seed's and one minibatch's
        gepa(dies_at(rollout_score, 3)).compile(
            app.program(), splits.train, splits.val, run_dir=tmp_path / "cut"
        )
    saved = json.loads((tmp_path / "cut" / "state.json").read_text())
    assert saved["progress"]["metric_calls"] >= 1  # the seed's score was saved before the kill
    resumed = gepa(rollout_score).compile(
        app.program(), splits.train, splits.val, run_dir=tmp_path / "cut", resume=True
    )
    assert resumed.best_candidate.components == whole.best_candidate.components
    assert [c.components for c in resumed.candidates] == [c.components for c in whole.candidates]
    assert resumed.budget.metric_calls == whole.budget.metric_calls


def test_an_optimized_task_app_exports_sft_rows_under_its_own_or_the_seed_prompt(app, tmp_path):
    """The SFT export reads a task app's traces as it reads a predictor's: the app's own LM calls as
    the proxy saw them, or the same calls with the seed prompt put back (distillation)."""
    from promptopt.optimizers import GEPA
    from promptopt.train.export import export_sft

    splits = app.examples()
    reflector = ScriptedLM(lambda m: "```\nRepeat the word in capitals.\n```")
    gepa = GEPA(rollout_score, max_metric_calls=12, reflection_lm=reflector, progress=False)
    result = gepa.compile(app.program(), splits.train, splits.val, run_dir=tmp_path / "run")
    rows = {}
    for prompt in ("optimized", "seed"):
        data = export_sft(
            result,
            app.program(),
            splits.train,
            rollout_score,
            tmp_path / prompt,
            prompt=prompt,
            val_fraction=0,
        )
        rows[prompt] = [json.loads(line) for line in data.train_file.read_text().splitlines()]
    assert len(rows["optimized"]) == len(splits.train) == 2
    for optimized, seed in zip(rows["optimized"], rows["seed"], strict=True):
        assert optimized["messages"][0]["content"] == "Repeat the word in capitals."
        assert seed["messages"][0]["content"] == SYSTEM
        assert optimized["messages"][1:] == seed["messages"][1:]  # the word, then its capitals
        assert seed["messages"][-1]["content"].isupper()
