"""The pairwise judge asks both orders and calls a position-following verdict a tie; agreement
statistics (accuracy, Cohen's kappa, position bias) with bootstrap intervals and paired changes."""

import numpy as np
import pytest
from scipy import stats

import promptopt as po
from promptopt.testing import ScriptedLM, field_value, last_user_message
from promptopt.verifiers import PairwiseJudge, agreement, agreement_change, agreement_with_label, cohen_kappa
from promptopt.verifiers.verdicts import PairwiseVerdict, position_bias_rate


def content_judge(messages):
    """Prefers the output that contains 'good', wherever it is shown."""
    msg = last_user_message(messages)
    a = field_value(msg, "output_a")
    return f"reason: one says good\nbetter: {'A' if 'good' in a else 'B'}"


def first_slot_judge(messages):
    return "reason: the first one\nbetter: A"


def test_a_consistent_preference_wins_and_a_position_preference_is_a_tie():
    judge = PairwiseJudge(lm=ScriptedLM(content_judge))
    v = judge.verdict("Say something.", "a good answer", "a poor answer")
    assert (v.first_order, v.second_order, v.winner, v.position_inconsistent) == (1, 1, 1, False)
    assert judge.verdict("Say something.", "poor", "good").winner == 2
    biased = PairwiseJudge(lm=ScriptedLM(first_slot_judge))
    tie = biased.verdict("Say something.", "a good answer", "a poor answer")
    assert (tie.first_order, tie.second_order, tie.winner) == (1, 2, 0)
    assert tie.position_inconsistent and tie.favoured_position == "first"
    assert position_bias_rate([v, tie]) == 0.5


def test_both_orders_are_asked_with_the_outputs_swapped():
    lm = ScriptedLM(content_judge)
    PairwiseJudge(lm=lm).verdict("i", "one", "two")
    shown = [
        (
            field_value(last_user_message(c["messages"]), "output_a"),
            field_value(last_user_message(c["messages"]), "output_b"),
        )
        for c in lm.calls
    ]
    assert shown == [("one", "two"), ("two", "one")]


def test_an_unreadable_order_is_recorded_not_guessed():
    replies = iter(["reason: x\nbetter: A", "no idea"])
    judge = PairwiseJudge(lm=ScriptedLM(lambda m: next(replies)))
    v = judge.verdict("i", "one", "two")
    assert v.first_order == 1 and v.second_order is None and v.winner is None and not v.parsed
    assert "order with output 2 first: the judge's reply could not be read" in v.failure
    assert position_bias_rate([v]) != position_bias_rate([v])  # nan: nothing parsed


def test_the_calibration_metric_rewards_agreement_and_explains_bias():
    ex = po.Example(input="i", output_1="a", output_2="b", label=2).with_inputs(
        "input", "output_1", "output_2"
    )
    right = agreement_with_label(ex, po.Prediction(winner=2, first_order=2, second_order=2))
    tie = agreement_with_label(ex, po.Prediction(winner=0, first_order=1, second_order=2))
    wrong = agreement_with_label(ex, po.Prediction(winner=1, first_order=1, second_order=1))
    assert (right.value, tie.value, wrong.value) == (1.0, 0.5, 0.0)
    assert "shown first" in tie.feedback and "output 2" in wrong.feedback


def test_cohen_kappa_matches_its_definition():
    gold = [1, 1, 2, 2, 1, 2, 1, 1]
    pred = [1, 2, 2, 2, 1, 1, 1, 1]
    po_, pe = 6 / 8, (5 / 8) * (5 / 8) + (3 / 8) * (3 / 8)
    assert cohen_kappa(gold, pred) == pytest.approx((po_ - pe) / (1 - pe))
    assert cohen_kappa(gold, gold) == 1.0
    assert cohen_kappa([1, 1, 1], [1, 1, 1]) == 1.0 and cohen_kappa([1, 1], [2, 2]) == 0.0
    assert cohen_kappa([1, 2], [0, 0]) == 0.0  # always a tie: no agreement beyond chance


def test_agreement_reports_intervals_that_cover_the_estimate():
    rng = np.random.default_rng(0)
    gold = list(rng.integers(1, 3, size=60))
    pred = [g if rng.random() < 0.8 else 3 - g for g in gold]
    pred[0] = None  # no verdict: a disagreement
    flips = list(rng.random(60) < 0.25)
    a = agreement(gold, pred, position_inconsistent=flips, seed=1)
    assert a.n == 60 and a.failed == 1
    assert a.accuracy.value == pytest.approx(np.mean([p == g for p, g in zip(pred, gold, strict=True)]))
    for est in (a.accuracy, a.kappa, a.position_bias):
        assert est.low <= est.value <= est.high and est.high - est.low > 0
    # the accuracy interval is a percentile bootstrap of a mean: close to scipy's own on the 0/1 values
    hits = np.array([p == g for p, g in zip(pred, gold, strict=True)], dtype=float)
    ref = stats.bootstrap((hits,), np.mean, method="percentile", n_resamples=2000, random_state=1)
    assert a.accuracy.low == pytest.approx(ref.confidence_interval.low, abs=0.04)
    assert agreement(gold, pred, seed=1) == agreement(gold, pred, seed=1)  # seeded


def test_a_paired_change_sees_an_improvement_the_examples_share():
    gold = [1, 2] * 30
    before = [1] * 60  # always output 1: half right, kappa 0
    after = [g if i % 10 else 3 - g for i, g in enumerate(gold)]  # 90% right
    change = agreement_change(gold, before, after, flips_before=[True] * 60, flips_after=[False] * 60)
    assert change.accuracy.value == pytest.approx(0.4) and change.accuracy.low > 0
    assert change.kappa.value == pytest.approx(cohen_kappa(gold, after)) and change.kappa.low > 0
    assert change.position_bias.value == -1.0 and change.position_bias.high == -1.0
    with pytest.raises(ValueError, match="60 labels, 60 verdicts before and 59 after"):
        agreement_change(gold, before, after[:-1])


def test_a_verdict_round_trips_to_json_shape():
    v = PairwiseVerdict(1, 2, ("a", "b"))
    assert v.to_dict() == {
        "winner": 0,
        "first_order": 1,
        "second_order": 2,
        "position_inconsistent": True,
        "reasons": ["a", "b"],
        "failure": None,
    }


def test_position_bias_counts_only_the_verdicts_there_are():
    gold = [1, 2, 1, 2]
    a = agreement(gold, [1, None, 0, 2], position_inconsistent=[False, None, True, False])
    assert a.position_bias.value == pytest.approx(1 / 3) and a.failed == 1
    change = agreement_change(
        gold, [1, None, 0, 2], [1, 2, 1, 2], flips_before=[False, None, True, False], flips_after=[False] * 4
    )
    assert change.position_bias.value == pytest.approx(-1 / 3)  # paired over the three both judged
