"""LangProBe tasks as native DSPy programs: class-based signatures written the way a DSPy user writes them.

The field names match the keys of each task's examples, so ``to_dspy_examples(task.splits(...).train)``
feeds them directly and the task's metric reads their predictions. Used by the DSPy plug-in experiments
(``experiments/dspy_plugin_local.py``), the real-LM tests of :mod:`promptopt.dspy` and
``notebooks/dspy_plugin.ipynb``. Importing this module needs ``dspy`` (``pip install promptopt[peers]``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import dspy

__all__ = [
    "Classify",
    "DescribePetals",
    "HeartDiagnosis",
    "IrisSpecies",
    "MathWordProblem",
    "PetalsThenSpecies",
    "scores_on",
]


def scores_on(
    program: dspy.Module,
    examples: Sequence[dspy.Example],
    metric: Callable[..., Any],
    num_threads: int = 2,
) -> list[float]:
    """Per-example scores of ``program`` with DSPy's own evaluator, in ``examples``' order; a reply
    DSPy cannot parse (or any other error) scores 0 instead of stopping the evaluation."""
    evaluate = dspy.Evaluate(
        devset=list(examples),
        metric=lambda example, pred, trace=None: float(metric(example, pred)),
        num_threads=num_threads,
        display_progress=False,
        max_errors=len(examples) + 1,
        failure_score=0.0,
    )
    return [float(score) for _, _, score in evaluate(program).results]


class IrisSpecies(dspy.Signature):
    """Given the measurements of an iris flower in centimetres, name its species."""

    sepal_length: str = dspy.InputField()
    sepal_width: str = dspy.InputField()
    petal_length: str = dspy.InputField()
    petal_width: str = dspy.InputField()
    species: Literal["setosa", "versicolor", "virginica"] = dspy.OutputField()


class HeartDiagnosis(dspy.Signature):
    """Given a patient's clinical measurements, decide whether heart disease is present."""

    age: str = dspy.InputField(desc="Age in years.")
    sex: str = dspy.InputField()
    chest_pain_type: str = dspy.InputField()
    resting_blood_pressure: str = dspy.InputField(desc="mm Hg on admission")
    serum_cholesterol: str = dspy.InputField(desc="mg/dl")
    fasting_blood_sugar_over_120: str = dspy.InputField(
        desc="Whether fasting blood sugar is above 120 mg/dl."
    )
    resting_ecg: str = dspy.InputField()
    max_heart_rate: str = dspy.InputField(desc="Maximum heart rate achieved during exercise.")
    exercise_induced_angina: str = dspy.InputField()
    st_depression: str = dspy.InputField(desc="ST depression induced by exercise relative to rest.")
    st_slope: str = dspy.InputField(desc="Slope of the peak exercise ST segment.")
    major_vessels: str = dspy.InputField(desc="Number of major vessels (0-3) coloured by fluoroscopy.")
    thalassemia: str = dspy.InputField(desc="Thallium stress test result.")
    diagnosis: Literal["present", "absent"] = dspy.OutputField()


class MathWordProblem(dspy.Signature):
    """Solve the math word problem. Give the final answer as a number."""

    question: str = dspy.InputField()
    answer: str = dspy.OutputField(desc="the final numeric answer only")


class DescribePetals(dspy.Signature):
    """Describe the flower's petals in a few words (short or long, narrow or wide)."""

    petal_length: str = dspy.InputField()
    petal_width: str = dspy.InputField()
    description: str = dspy.OutputField()


class Classify(dspy.Signature):
    """Name the iris species from the flower's measurements and a description of its petals."""

    sepal_length: str = dspy.InputField()
    sepal_width: str = dspy.InputField()
    petal_length: str = dspy.InputField()
    petal_width: str = dspy.InputField()
    description: str = dspy.InputField()
    species: Literal["setosa", "versicolor", "virginica"] = dspy.OutputField()


class PetalsThenSpecies(dspy.Module):
    """A two-module iris pipeline: one module describes the petals in words, a second names the species
    from the four measurements and that description."""

    def __init__(self) -> None:
        super().__init__()
        self.describe = dspy.Predict(DescribePetals)
        self.classify = dspy.Predict(Classify)

    def forward(self, sepal_length, sepal_width, petal_length, petal_width):
        description = self.describe(petal_length=petal_length, petal_width=petal_width).description
        return self.classify(
            sepal_length=sepal_length,
            sepal_width=sepal_width,
            petal_length=petal_length,
            petal_width=petal_width,
            description=description,
        )
