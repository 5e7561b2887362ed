"""langprobe.dspy_programs: the DSPy signatures read the tasks' own examples, and the task metric
scores their predictions (a scripted LM behind dspy.LM)."""

from __future__ import annotations

import re

import pytest

dspy = pytest.importorskip("dspy")

from langprobe.dspy_programs import (  # noqa: E402
    HeartDiagnosis,
    IrisSpecies,
    MathWordProblem,
    PetalsThenSpecies,
    scores_on,
)
from langprobe.registry import get_task  # noqa: E402
from langprobe.task import mirror_dir  # noqa: E402
from promptopt.dspy.conversion import to_dspy_examples  # noqa: E402
from promptopt.dspy.lms import dspy_lm  # noqa: E402
from promptopt.testing import ScriptedLM  # noqa: E402

pytestmark = pytest.mark.skipif(mirror_dir() is None, reason="no local data mirror (shared/data)")


@pytest.mark.parametrize(
    ("task_name", "signature", "output"),
    [
        ("iris", IrisSpecies, "species"),
        ("heartdisease", HeartDiagnosis, "diagnosis"),
        ("gsm8k", MathWordProblem, "answer"),
    ],
)
def test_signatures_take_the_tasks_inputs_and_answer_what_the_metric_reads(task_name, signature, output):
    task = get_task(task_name)
    ex = to_dspy_examples(task.splits(seed=0, sizes=(1, 1, 1)).train)[0]
    assert set(signature.input_fields) == set(ex.inputs().keys())
    assert list(signature.output_fields) == [output]
    assert task.metric(ex, dspy.Prediction(**{output: getattr(ex, output)})).value == 1.0


def test_the_iris_pipeline_hands_the_description_on_and_the_metric_scores_it():
    seen: list[str] = []

    def reply(messages):
        system, last = messages[0]["content"], messages[-1]["content"]
        if "`description`" in system.split("Your output fields are:")[1]:
            return "[[ ## description ## ]]\nshort and narrow petals\n\n[[ ## completed ## ]]"
        seen.append(last)
        return "[[ ## species ## ]]\nsetosa\n\n[[ ## completed ## ]]"

    task = get_task("iris")
    examples = to_dspy_examples(task.splits(seed=0, sizes=(30, 1, 1)).train)
    setosa = next(ex for ex in examples if ex.species == "setosa")
    other = next(ex for ex in examples if ex.species != "setosa")
    program = PetalsThenSpecies()
    with dspy.context(lm=dspy_lm(ScriptedLM(reply))):
        right, wrong = program(**setosa.inputs()), program(**other.inputs())
    assert [name for name, _ in program.named_predictors()] == ["describe", "classify"]
    assert "short and narrow petals" in seen[0]
    assert re.search(r"petal_length.*\n.*" + re.escape(setosa.petal_length), seen[0])  # and the numbers
    assert task.metric(setosa, right).value == 1.0 and task.metric(other, wrong).value == 0.0


def test_scores_on_keeps_the_examples_order_and_scores_an_unparseable_reply_zero():
    task = get_task("iris")
    examples = to_dspy_examples(task.splits(seed=0, sizes=(30, 1, 1)).train)
    setosa = next(ex for ex in examples if ex.species == "setosa")
    other = next(ex for ex in examples if ex.species != "setosa")

    def reply(messages):
        if f"[[ ## petal_length ## ]]\n{setosa.petal_length}\n" in messages[-1]["content"]:
            return "[[ ## species ## ]]\nsetosa\n\n[[ ## completed ## ]]"
        return "no fields at all"

    with dspy.context(lm=dspy_lm(ScriptedLM(reply))):
        scores = scores_on(dspy.Predict(IrisSpecies), [other, setosa, other], task.metric)
    assert scores == [0.0, 1.0, 0.0]
