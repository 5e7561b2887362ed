"""Calibrating a judge with GEPA on scripted LMs: a position-biased judge learns to read the content,
and the report shows held-out agreement before and after, per subset, with the paired change."""

import json

import pytest

import promptopt as po
from promptopt.core.program import load_program
from promptopt.optimizers import GEPA
from promptopt.testing import ScriptedLM, field_value, last_user_message
from promptopt.verifiers import PairwiseJudge, agreement_with_label
from promptopt.verifiers.calibration import PassFailLabels, calibrate, split_labeled

KEY = "JUDGE-BY-CONTENT"


def judge_reply(messages):
    """Picks whichever output says 'good' when its instruction says KEY; otherwise always slot A."""
    if KEY in messages[0]["content"]:
        a = field_value(last_user_message(messages), "output_a")
        return f"reason: one says good\nbetter: {'A' if 'good' in a else 'B'}"
    return "reason: the first looks fine\nbetter: A"


def reflector():
    return ScriptedLM(lambda m: f"```\n{KEY}: prefer the output that does what was asked.\n```")


def pairs(n):
    rows = []
    for i in range(n):
        label = 1 + i % 2
        outs = ("a good answer", "a poor answer") if label == 1 else ("a poor answer", "a good answer")
        subset = "natural" if i % 3 else "adversarial_neighbor"
        rows.append(
            po.Example(
                _id=f"p{i}",
                instruction=f"task {i}",
                output_1=outs[0],
                output_2=outs[1],
                label=label,
                subset=subset,
            ).with_inputs("instruction", "output_1", "output_2")
        )
    return rows


def test_a_position_biased_judge_is_calibrated_on_held_out_examples(tmp_path):
    optimizer = GEPA(
        agreement_with_label,
        max_metric_calls=40,
        reflection_lm=reflector(),
        evolve_demos=False,
        progress=False,
    )
    report = calibrate(
        PairwiseJudge(),
        pairs(30),
        optimizer=optimizer,
        sizes=(8, 8, 14),
        lm=ScriptedLM(judge_reply),
        run_dir=tmp_path / "run",
        num_threads=1,
    )
    assert report.sizes == (8, 8, 14) and report.before.n == report.after.n == 14
    # Before: every verdict followed the slot, so every one is a tie: no agreement, full position bias.
    assert report.before.accuracy.value == 0.0 and report.before.position_bias.value == 1.0
    assert report.after.accuracy.value == 1.0 and report.after.position_bias.value == 0.0
    assert report.change.accuracy.value == 1.0 and report.change.accuracy.low == 1.0
    assert report.change.position_bias.value == -1.0
    assert set(report.by_group) == {"natural", "adversarial_neighbor"}
    assert sum(before.n for before, _ in report.by_group.values()) == 14
    assert KEY in report.judge.components()["compare.instruction"]
    # The held-out examples were neither trained nor validated on.
    train, val, test = split_labeled(pairs(30), (8, 8, 14))
    assert not {e.id for e in test} & {e.id for e in (*train, *val)}
    assert list(report.after_verdicts.ids) == [e.id for e in test]
    saved = json.loads(report.save(tmp_path / "report.json", provenance={"command": "test"}).read_text())
    assert saved["after"]["accuracy"]["value"] == 1.0 and saved["provenance"] == {"command": "test"}
    assert KEY in saved["judge_components"]["compare.instruction"]
    report.judge.save(tmp_path / "judge.json")
    assert load_program(tmp_path / "judge.json").components() == report.judge.components()


def test_split_sizes_are_checked():
    with pytest.raises(ValueError, match="Cannot draw 20/20/20 train/val/held-out examples from 30"):
        split_labeled(pairs(30), (20, 20, 20))


def test_pass_fail_labels_read_strings_and_scores():
    labels = PassFailLabels(threshold=0.6)
    assert labels.gold(po.Example(label="pass")) is True and labels.gold(po.Example(label=0)) is False
    assert labels.verdict(po.Prediction(score=0.75)) is True and labels.verdict(None) is None


def test_pass_fail_agreement_scores_the_verdict_against_the_label_and_says_why():
    from promptopt.core.example import Prediction
    from promptopt.verifiers import pass_fail_agreement

    metric = pass_fail_agreement(threshold=0.6)
    passing = po.Example(_id="a", task_input="q", output="o", label="pass")
    right = metric(passing, Prediction(score=0.8, feedback="all criteria met"))
    wrong = metric(passing, Prediction(score=0.5, feedback="correct: unmet (the sum is off)"))
    assert right.value == 1.0 and "passes by its label" in right.feedback
    assert wrong.value == 0.0 and "fail at 0.6" in wrong.feedback and "the sum is off" in wrong.feedback
    assert metric(po.Example(_id="b", label=False), Prediction(score=0.2, feedback="")).value == 1.0
