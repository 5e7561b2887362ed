"""The judge-in-the-loop experiment on scripted LMs: a judge that can be pleased without being right
is optimized against, and the report shows the judge's score rising while the gold score does not."""

import importlib.util
from pathlib import Path

from promptopt.core.example import Example
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


def loop(run_dir, judge_reply, proposal: str, calibration=None):
    """The experiment on the toy task: a one-criterion rubric, a task LM that learns the hook."""
    return experiment.run_experiment(
        seed_program=toy_program(),
        train=toy_examples(6),
        val=toy_examples(4, offset=6),
        test=toy_examples(8, offset=10),
        gold_metric=toy_metric,
        rubric=Rubric.of([{"id": "correct", "description": "The answer is correct."}]),
        task_lm=ScriptedLM(task_reply),
        judge_lm=ScriptedLM(judge_reply),
        reflection_lm=ScriptedLM(lambda m: f"```\n{proposal}\n```"),
        budget=30,
        run_dir=run_dir,
        threads=1,
        calibration=calibration,
    )


def test_reward_hacking_shows_as_a_judge_gain_without_a_gold_gain(tmp_path):
    report = loop(tmp_path / "run", gullible_judge, f"{HOOK}: end every answer with an exclamation mark.")
    judge, gold = report["test"]["judge"], report["test"]["gold"]
    assert (judge["seed"], judge["optimized"]) == (0.0, 1.0) and judge["lift"]["ci95"][0] > 0
    assert (gold["seed"], gold["optimized"]) == (0.0, 0.0) and gold["lift"]["mean"] == 0.0
    assert report["reading"].startswith("the judge's score rose and the gold score did not")
    assert report["budget"]["judge_lm_calls"] > 0 and HOOK in report["best_components"]["self.instruction"]
    assert experiment.rendered_inputs(toy_examples(1)[0]) == "word: " + toy_examples(1)[0].word


def strict_or_gullible_judge(messages):
    """Right about correct answers (the output is the word in capitals); also takes an exclamation
    mark for a correct answer, unless its prompt says STRICT somewhere."""
    text = last_user_message(messages)
    word = field_value(text, "task_input").removeprefix("word: ").strip()
    output = field_value(text, "output").removeprefix("out: ").strip()
    strict = any("STRICT" in m["content"] for m in messages)
    met = output == word.upper() or (output.endswith("!") and not strict)
    return f"reason: {'looks right' if met else 'wrong'}\nverdict: {'yes' if met else 'no'}"


def labeled(n):
    """Outputs labeled by an answer key: a third right (pass), a third wrong with '!' and a third
    plainly wrong (both fail)."""
    rows = []
    for i, ex in enumerate(toy_examples(n)):
        output = [ex.word.upper(), "nope!", "nope"][i % 3]
        right = output == ex.word.upper()
        row = Example(_id=f"l{i}", task_input=f"word: {ex.word}", output=f"out: {output}", label=right)
        rows.append(row.with_inputs("task_input", "output"))
    return rows


def test_a_calibrated_judge_is_not_pleased_by_the_hook_the_uncalibrated_one_took(tmp_path):
    proposal = f"STRICT. {HOOK}: end answers with a bang."
    report = loop(tmp_path / "run", strict_or_gullible_judge, proposal, (labeled(18), 40, (6, 6, 6)))
    judge = report["judge"]
    assert judge["calibrated"] and judge["labeled_outputs"] == {"n": 18, "pass": 6}
    # Held out: the '!' answers were passed before (a third of them wrong), none after.
    assert judge["before"]["accuracy"]["value"] < 1.0 and judge["after"]["accuracy"]["value"] == 1.0
    assert any("STRICT" in str(text) for text in judge["judge_components"].values())
    # The program still learns the hook, but the calibrated judge no longer pays for it.
    scores = report["test"]["judge"]
    assert scores["seed"] == scores["optimized"] == 0.0 and report["test"]["gold"]["optimized"] == 0.0
    assert report["reading"] == "the judge's score did not rise clearly"
