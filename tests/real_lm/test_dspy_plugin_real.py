"""promptopt.dspy.GEPA on a native DSPy program, run by DSPy on the real local model.

Iris (20 train, 8 validation, 12 test) with a ``dspy.Predict`` over a class-based DSPy signature;
the task LM is ``dspy_lm(po.LM("local"))`` configured with ``dspy.configure``, the reflection LM a
dspy.LM on the same local model at temperature 0.7. A budget of 20 metric calls keeps the run to
roughly 60 examples run by DSPy (a reply DSPy cannot parse costs a second, JSON-format call) and one
or two reflections on the CPU-served 0.5B model: a few minutes when the server is not shared.
Held-out scores before and after are printed; the assertions are the ones GEPA guarantees
(validation never worse than the seed) and the ones the plug-in promises (a dspy module that runs,
saves, loads and predicts alike).
"""

from __future__ import annotations

import time
from typing import Literal

import dspy
import pytest

import promptopt as po
from langprobe import get_task
from promptopt.dspy import GEPA
from promptopt.integrations.dspy import dspy_lm, to_dspy_examples

# Minutes on the local model: run with `pytest -m slow` (CI does).
pytestmark = pytest.mark.slow


class IrisSpecies(dspy.Signature):
    """Given the measurements of an iris flower in centimetres, name its species."""

    sepal_length: str = dspy.InputField()
    sepal_width: str = dspy.InputField()
    petal_length: str = dspy.InputField()
    petal_width: str = dspy.InputField()
    species: Literal["setosa", "versicolor", "virginica"] = dspy.OutputField()


def held_out(program, examples, metric):
    """Accuracy with DSPy's own evaluator; a reply DSPy cannot parse scores 0."""
    evaluate = dspy.Evaluate(
        devset=examples,
        metric=lambda ex, pred, trace=None: float(metric(ex, pred).score),
        num_threads=4,
        display_progress=False,
        max_errors=len(examples) + 1,
    )
    return evaluate(program).score / 100


def iris_data(seed, sizes):
    """Iris splits as dspy.Examples and the task's metric in dspy.GEPA's feedback form."""
    task = get_task("iris")
    splits = task.splits(seed=seed, sizes=sizes)
    train, val, test = (to_dspy_examples(s) for s in (splits.train, splits.val, splits.test))

    def metric(gold, pred, trace=None, pred_name=None, pred_trace=None):
        score = task.metric(gold, pred)
        return dspy.Prediction(score=score.value, feedback=score.feedback)

    return train, val, test, metric


@pytest.mark.real_lm
def test_promptopt_gepa_on_a_dspy_predict_with_the_local_model(tmp_path):
    train, val, test, metric = iris_data(seed=0, sizes=(20, 8, 12))

    task_lm = dspy_lm(po.LM("local", cache=False, max_tokens=64))
    reflection_lm = dspy_lm(po.LM("local", cache=False, temperature=0.7, max_tokens=300))
    student = dspy.Predict(IrisSpecies)
    t0 = time.perf_counter()
    with dspy.context(lm=task_lm):
        before = held_out(student, test, metric)
        optimizer = GEPA(
            metric,
            max_metric_calls=20,
            reflection_lm=reflection_lm,
            max_demos=2,
            num_threads=4,
            run_dir=tmp_path / "run",
            progress=False,
        )
        compiled = optimizer.compile(student, trainset=train, valset=val)
        after = held_out(compiled, test, metric)
    elapsed = time.perf_counter() - t0
    result = compiled.promptopt_result

    assert type(compiled) is dspy.Predict and compiled is not student
    assert result.best_score >= result.seed_score  # GEPA never returns a worse validation score
    assert len(result.candidates[0].val_scores) == len(val)
    assert result.budget.lm_calls >= result.budget.metric_calls > 0  # DSPy's calls are counted
    # The run went past the seed's validation (unless the seed was already perfect there).
    assert result.budget.metric_calls > len(val) or result.stop_reason.startswith("a candidate is perfect")
    assert (tmp_path / "run" / "result.json").exists()

    compiled.save(tmp_path / "iris.json")
    loaded = dspy.Predict(IrisSpecies)
    loaded.load(tmp_path / "iris.json")
    assert loaded.signature.instructions == compiled.signature.instructions
    assert [dict(d) for d in loaded.demos] == [d.toDict() for d in compiled.demos]
    with dspy.context(lm=task_lm):
        for ex in test[:2]:
            assert loaded(**ex.inputs()).species == compiled(**ex.inputs()).species

    print(
        f"\npromptopt.dspy.GEPA on iris (local model): validation {result.seed_score:.3f} -> "
        f"{result.best_score:.3f}; test {before:.3f} -> {after:.3f} ({len(test)} examples); "
        f"{result.budget.metric_calls} metric calls, {result.budget.lm_calls} LM calls, "
        f"{len(result.candidates)} candidates, stopped: {result.stop_reason}; {elapsed:.0f}s"
    )
    print(f"instruction: {compiled.signature.instructions!r}; {len(compiled.demos)} demos")


class Describe(dspy.Signature):
    """Describe the flower's petals in a few words (short or long, narrow or wide)."""

    petal_length: str = dspy.InputField()
    petal_width: str = dspy.InputField()
    description: str = dspy.OutputField()


class Classify(dspy.Signature):
    """Name the iris species from the petal description and the sepal measurements."""

    description: str = dspy.InputField()
    sepal_length: str = dspy.InputField()
    sepal_width: str = dspy.InputField()
    species: Literal["setosa", "versicolor", "virginica"] = dspy.OutputField()


class TwoStep(dspy.Module):
    """A two-module pipeline: a Predict whose output feeds a ChainOfThought."""

    def __init__(self):
        super().__init__()
        self.describe = dspy.Predict(Describe)
        self.classify = dspy.ChainOfThought(Classify)

    def forward(self, sepal_length, sepal_width, petal_length, petal_width):
        d = self.describe(petal_length=petal_length, petal_width=petal_width).description
        return self.classify(description=d, sepal_length=sepal_length, sepal_width=sepal_width)


@pytest.mark.real_lm
def test_promptopt_mipro_on_cot_and_a_two_module_pipeline(tmp_path):
    """Both DSPy modules of a pipeline (one of them a ChainOfThought) become components, are
    optimized by promptopt.dspy.MIPROv2 on the local model, and come back as a TwoStep that saves,
    loads and predicts alike."""
    from promptopt.dspy import MIPROv2

    task = get_task("iris")
    splits = task.splits(seed=1, sizes=(12, 6, 6))
    train, val, test = (to_dspy_examples(s) for s in (splits.train, splits.val, splits.test))

    def accuracy(example, pred, trace=None):
        return task.metric(example, pred).value

    task_lm = dspy_lm(po.LM("local", max_tokens=200))
    student = TwoStep()
    with dspy.context(lm=task_lm):
        before = held_out(student, test, lambda ex, pred: dspy.Prediction(score=accuracy(ex, pred)))
        compiled = MIPROv2(
            accuracy,
            auto=None,
            num_candidates=2,
            num_trials=2,
            minibatch_size=3,
            max_bootstrapped_demos=1,
            max_labeled_demos=1,
            num_threads=2,
            run_dir=tmp_path / "run",
            progress=False,
        ).compile(student, trainset=train, valset=val)
        after = held_out(compiled, test, lambda ex, pred: dspy.Prediction(score=accuracy(ex, pred)))
    result = compiled.promptopt_result
    comps = result.candidates[0].components
    assert type(compiled) is TwoStep and compiled is not student
    assert any(k.startswith("describe") for k in comps) and any(k.startswith("classify") for k in comps)
    assert result.best_score >= result.seed_score
    compiled.save(tmp_path / "two.json")
    loaded = TwoStep()
    loaded.load(tmp_path / "two.json")
    for name, pred in compiled.named_predictors():
        other = dict(loaded.named_predictors())[name]
        assert other.signature.instructions == pred.signature.instructions
        assert len(other.demos) == len(pred.demos)
    with dspy.context(lm=task_lm):
        ex = test[0]
        assert loaded(**ex.inputs()).species == compiled(**ex.inputs()).species
    print(
        f"\npromptopt.dspy.MIPROv2 on a two-module iris pipeline: validation {result.seed_score:.3f} -> "
        f"{result.best_score:.3f}; test {before:.3f} -> {after:.3f}; components {sorted(comps)}"
    )


def petal_size(petal_length: float, petal_width: float) -> str:
    """Describes petals."""
    length, width = float(petal_length), float(petal_width)
    if length < 2.5:
        return "small petals, as setosa has"
    return "large petals, as virginica has" if width >= 1.7 else "medium petals, as versicolor has"


@pytest.mark.real_lm
def test_promptopt_gepa_on_a_dspy_react_agent(tmp_path):
    """A dspy.ReAct agent with one tool: its instruction and the tool's description are components,
    and GEPA's reflection on the local model proposes a new description from the agent's traces."""
    train, val, test, metric = iris_data(seed=2, sizes=(6, 3, 2))

    proposals = []

    class Proposals:
        def on_event(self, event, **data):
            if event == "proposal":
                proposals.append(data)

    task_lm = dspy_lm(po.LM("local", max_tokens=200))
    reflection_lm = dspy_lm(po.LM("local", temperature=0.7, max_tokens=300))
    student = dspy.ReAct(IrisSpecies, tools=[petal_size], max_iters=2)
    with dspy.context(lm=task_lm):
        compiled = GEPA(
            metric,
            max_metric_calls=9,
            reflection_lm=reflection_lm,
            component_selector="all",
            evolve_demos=False,
            callbacks=[Proposals()],
            num_threads=2,
            progress=False,
        ).compile(student, trainset=train, valset=val)
        prediction = compiled(**test[0].inputs())
    result = compiled.promptopt_result
    assert "react.tool[petal_size]" in result.candidates[0].components
    assert result.candidates[0].components["react.tool[petal_size]"] == "Describes petals."
    assert any(p["component"] == "react.tool[petal_size]" for p in proposals)
    assert result.best_score >= result.seed_score
    assert type(compiled) is dspy.ReAct and prediction.species in ("setosa", "versicolor", "virginica")
    tool_line = f"<desc>{compiled.tools['petal_size'].desc}</desc>"
    assert tool_line.replace("\n", "  ") in compiled.react.signature.instructions
    print(
        f"\npromptopt.dspy.GEPA on a ReAct agent: validation {result.seed_score:.3f} -> "
        f"{result.best_score:.3f}; "
        f"tool proposals: {[p['text'] for p in proposals if p['component'].startswith('react.tool')]}"
    )
