"""The judge-in-the-loop experiment on scripted LMs: a judge that can be pleased without being right
is optimized against, and the report shows the judge's score rising while the gold score does not."""

import importlib.util
from pathlib import Path

from promptopt.testing import (
    ScriptedLM,
    field_value,
    last_user_message,
    toy_examples,
    toy_metric,
    toy_program,
)
from promptopt.verifiers import Rubric

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location(
    "judge_in_the_loop", ROOT / "experiments" / "judge_in_the_loop.py"
)
experiment = importlib.util.module_from_spec(spec)
spec.loader.exec_module(experiment)

HOOK = "END-WITH-BANG"


def task_reply(messages):
    """The task model answers wrongly either way; told to, it ends its answer with '!'."""
    return "out: nope!" if HOOK in messages[0]["content"] else "out: nope"


def gullible_judge(messages):
    """A judge that takes an exclamation mark for a correct answer."""
    output = field_value(last_user_message(messages), "output")
    met = output.rstrip().endswith("!")
    return f"reason: {'confident' if met else 'hesitant'}\nverdict: {'yes' if met else 'no'}"


def test_reward_hacking_shows_as_a_judge_gain_without_a_gold_gain(tmp_path):
    rubric = Rubric.of([{"id": "correct", "description": "The answer is correct."}])
    report = experiment.run_experiment(
        seed_program=toy_program(),
        train=toy_examples(6),
        val=toy_examples(4, offset=6),
        test=toy_examples(8, offset=10),
        gold_metric=toy_metric,
        rubric=rubric,
        task_lm=ScriptedLM(task_reply),
        judge_lm=ScriptedLM(gullible_judge),
        reflection_lm=ScriptedLM(lambda m: f"```\n{HOOK}: end every answer with an exclamation mark.\n```"),
        budget=30,
        run_dir=tmp_path / "run",
        threads=1,
    )
    judge, gold = report["test"]["judge"], report["test"]["gold"]
    assert (judge["seed"], judge["optimized"]) == (0.0, 1.0) and judge["lift"]["ci95"][0] > 0
    assert (gold["seed"], gold["optimized"]) == (0.0, 0.0) and gold["lift"]["mean"] == 0.0
    assert report["reading"].startswith("the judge's score rose and the gold score did not")
    assert report["budget"]["judge_lm_calls"] > 0 and HOOK in report["best_components"]["self.instruction"]
    assert experiment.rendered_inputs(toy_examples(1)[0]) == "word: " + toy_examples(1)[0].word
