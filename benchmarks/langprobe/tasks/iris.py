"""Iris: classify a flower's species from four measurements (150 rows)."""

from __future__ import annotations

import csv
import os

from langprobe.task import Task, load_from_hub, task_dir
from promptopt import ChainOfThought, Example, Predict, Score, Signature

SPECIES = ("setosa", "versicolor", "virginica")
FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")


def load(data_dir: str | os.PathLike[str] | None = None) -> list[Example]:
    folder = task_dir("iris", data_dir)
    rows: list[tuple[list[str], str]] = []
    if folder is not None:
        with open(folder / "iris.csv") as fh:
            reader = csv.reader(fh)
            next(reader)  # sklearn header: n_rows, n_features, class names
            rows = [(r[:4], SPECIES[int(r[4])]) for r in reader if r]
    else:
        for r in load_from_hub("scikit-learn/iris", split="train"):
            values = [r["SepalLengthCm"], r["SepalWidthCm"], r["PetalLengthCm"], r["PetalWidthCm"]]
            rows.append(([str(v) for v in values], r["Species"].removeprefix("Iris-")))
    return [
        Example(_id=f"iris-{i}", **dict(zip(FEATURES, feats)), species=label).with_inputs(*FEATURES)
        for i, (feats, label) in enumerate(rows)
    ]


def _signature() -> Signature:
    return Signature.parse(
        "sepal_length, sepal_width, petal_length, petal_width -> species",
        instruction="Given the measurements of an iris flower in centimetres, name its species.",
        choices={"species": SPECIES},
    )


def metric(example: Example, prediction, trace=None) -> Score:
    got = str(prediction.get("species", "")).strip().lower()
    want = example.species
    if got == want:
        return Score(1.0, f"Correct: the species is {want}.")
    return Score(
        0.0,
        f"Wrong: predicted {got or 'nothing'!s}, but the flower with petal length {example.petal_length} cm "
        f"and petal width {example.petal_width} cm is {want}.",
    )


TASK = Task(
    name="iris",
    load=load,
    metric=metric,
    programs={"predict": lambda: Predict(_signature()), "cot": lambda: ChainOfThought(_signature())},
    sizes=(30, 30, 60),
    description="Iris species from four measurements; accuracy.",
    kind="classification",
)
