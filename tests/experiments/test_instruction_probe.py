"""The instruction probe of experiments/gepa_dev/instruction_sensitivity.py: where its second
placement puts the instruction, and that each variant's answers come from the adapter it names."""

from __future__ import annotations

import pytest

from langprobe.registry import get_task
from langprobe.task import mirror_dir
from promptopt.core.adapter import ChatAdapter
from promptopt.testing.scripted_lm import ScriptedLM, last_user_message


@pytest.fixture(scope="module")
def probe(dev_script):
    return dev_script("instruction_sensitivity.py")


def _signature():
    return get_task("iris").program("predict").named_predictors()[0][1].signature


def test_instruction_last_repeats_it_after_the_final_inputs_only(probe):
    sig = _signature()
    demo = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
    demo["species"] = "setosa"
    inputs = {"sepal_length": 6.3, "sepal_width": 3.3, "petal_length": 6.0, "petal_width": 2.5}
    plain = ChatAdapter().format(sig, [demo], inputs)
    moved = probe.InstructionLastAdapter().format(sig, [demo], inputs)
    assert len(moved) == len(plain) == 4
    assert moved[:3] == plain[:3]  # system message and the demo as they were
    assert moved[-1]["content"] == plain[-1]["content"] + "\n\n" + sig.instruction.strip()
    assert sig.instruction.strip() not in moved[1]["content"]


@pytest.mark.skipif(mirror_dir() is None, reason="no local data mirror (shared/data)")
def test_each_variant_runs_with_the_adapter_it_names(probe):
    def reply(messages):
        # A model that obeys an instruction only where it reads it last, and else says versicolor.
        last = last_user_message(messages)
        for choice in ("setosa", "versicolor", "virginica"):
            if last.endswith(f"Always answer {choice}."):
                return f"species: {choice}"
        return "species: versicolor"

    lm = ScriptedLM(reply)
    task = get_task("iris")
    examples = task.splits(seed=0, sizes=(15, 15, 10)).test
    in_system = probe.run_variant(task, "Always answer setosa.", examples, lm, probe.PLACEMENTS["system"])
    at_end = probe.run_variant(task, "Always answer setosa.", examples, lm, probe.PLACEMENTS["user_end"])
    assert in_system["answers"] == {"versicolor": len(examples)}
    assert at_end["answers"] == {"setosa": len(examples)}
    gold_setosa = sum(e.species == "setosa" for e in examples)
    assert at_end["score"] == pytest.approx(gold_setosa / len(examples))
