"""The demo order probe of experiments/gepa_dev/demo_order_probe.py (the orders it compares hold
the same demos; its paired difference) and the proposer question of instruction_ceiling.py."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def probe(dev_script):
    return dev_script("demo_order_probe.py")


def _demos(labels: str) -> list[dict[str, str]]:
    return [{"id": f"d{i}", "label": lab} for i, lab in enumerate(labels)]


def test_interleaved_takes_turns_over_the_labels_rarest_first(probe):
    demos = _demos("aaaabbc")  # the favourite label first, as bootstrapped demos stand
    arranged = probe.interleaved(demos, lambda d: d["label"])
    assert [d["label"] for d in arranged] == list("cbabaaa")
    assert [d["id"] for d in arranged if d["label"] == "a"] == ["d0", "d1", "d2", "d3"]  # own order kept


def test_every_order_holds_the_same_demos(probe):
    demos = _demos("abcabbcaa")
    for order, arrange in probe.ORDERS.items():
        arranged = arrange(demos, lambda d: d["label"])
        assert sorted(d["id"] for d in arranged) == sorted(d["id"] for d in demos), order
    assert probe.ORDERS["as_is"](demos, None) == demos
    assert probe.ORDERS["reversed"](demos, None) == demos[::-1]


def test_paired_difference_is_the_mean_per_example_difference(probe):
    result = probe.paired_difference([1, 1, 0, 1], [1, 0, 0, 0])
    assert result["mean_difference"] == pytest.approx(0.5)
    low, high = result["difference_ci95"]
    assert low <= 0.5 <= high
    same = probe.paired_difference([1, 0], [1, 0])
    assert same == {"mean_difference": 0.0, "difference_ci95": [0.0, 0.0]}


@pytest.fixture(scope="module")
def ceiling(dev_script):
    return dev_script("instruction_ceiling.py")


def test_the_proposer_is_asked_for_rules_and_its_fenced_instruction_is_taken(ceiling):
    from langprobe.registry import get_task
    from promptopt.testing.scripted_lm import ScriptedLM, last_user_message

    asked = []

    def reply(messages):
        asked.append(last_user_message(messages))
        return "Here it is:\n```text\nAnswer virginica for long petals.\n```\nGood luck."

    signature = get_task("iris").program("predict").named_predictors()[0][1].signature
    got = ceiling.proposed(signature, ScriptedLM(reply))
    assert got["instruction"] == "Answer virginica for long petals."
    assert got["prompt"] == asked[0]
    assert "setosa, versicolor, virginica" in asked[0] and "- petal_length" in asked[0]
    assert signature.instruction.strip() in asked[0]
    unfenced = ceiling.proposed(signature, ScriptedLM(lambda m: "  Look at the petals.  "))
    assert unfenced["instruction"] == "Look at the petals."
