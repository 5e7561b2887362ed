"""UCI Heart Disease (Cleveland): diagnose heart disease from 13 clinical measurements.

303 patients. The mirror's copy has one added header line; six rows have ``?``
for a missing value (``ca`` or ``thal``), shown to the model as ``unknown``.
The target ``num`` runs 0-4 (0 = no disease); any value above 0 counts as
disease, the usual binary formulation. Coded values are rendered as words.
"""

from __future__ import annotations

import csv
import os
from typing import Any

from langprobe.task import Task, load_from_hub, task_dir
from promptopt import ChainOfThought, Example, Predict, Score, Signature

LABELS = ("present", "absent")

# (input field, UCI column, description, code -> words); the order is the UCI column order.
FEATURES: tuple[tuple[str, str, str, dict[str, str] | None], ...] = (
    ("age", "age", "Age in years.", None),
    ("sex", "sex", "Sex.", {"0": "female", "1": "male"}),
    (
        "chest_pain_type",
        "cp",
        "Chest pain type.",
        {"1": "typical angina", "2": "atypical angina", "3": "non-anginal pain", "4": "asymptomatic"},
    ),
    ("resting_blood_pressure", "trestbps", "Resting blood pressure in mm Hg on admission.", None),
    ("serum_cholesterol", "chol", "Serum cholesterol in mg/dl.", None),
    (
        "fasting_blood_sugar_over_120",
        "fbs",
        "Whether fasting blood sugar is above 120 mg/dl.",
        {"0": "no", "1": "yes"},
    ),
    (
        "resting_ecg",
        "restecg",
        "Resting electrocardiogram result.",
        {"0": "normal", "1": "ST-T wave abnormality", "2": "left ventricular hypertrophy"},
    ),
    ("max_heart_rate", "thalach", "Maximum heart rate achieved during exercise.", None),
    ("exercise_induced_angina", "exang", "Whether exercise induced angina.", {"0": "no", "1": "yes"}),
    ("st_depression", "oldpeak", "ST depression induced by exercise relative to rest.", None),
    (
        "st_slope",
        "slope",
        "Slope of the peak exercise ST segment.",
        {"1": "upsloping", "2": "flat", "3": "downsloping"},
    ),
    ("major_vessels", "ca", "Number of major vessels (0-3) coloured by fluoroscopy.", None),
    (
        "thalassemia",
        "thal",
        "Thallium stress test result.",
        {"3": "normal", "6": "fixed defect", "7": "reversible defect"},
    ),
)
INPUTS = tuple(f[0] for f in FEATURES)


def _value(raw: Any, codes: dict[str, str] | None) -> str:
    text = str(raw).strip()
    if text in ("?", "", "None", "nan"):
        return "unknown"
    if text.endswith(".0"):  # the file writes every integer as a float
        text = text[:-2]
    return codes.get(text, text) if codes else text


def _rows(data_dir: str | os.PathLike[str] | None) -> list[tuple[list[Any], int]]:
    folder = task_dir("heartdisease", data_dir)
    if folder is not None:
        with open(folder / "processed.cleveland.data", newline="") as fh:
            reader = csv.reader(fh)
            next(reader)  # the header line the mirror's source repo added
            return [(r[:13], int(float(r[13]))) for r in reader if r]
    columns = [f[1] for f in FEATURES]
    rows = load_from_hub("buio/heart-disease", split="train")
    return [([r[c] for c in columns], int(r["target"])) for r in rows]


def load(data_dir: str | os.PathLike[str] | None = None) -> list[Example]:
    out = []
    for i, (values, target) in enumerate(_rows(data_dir)):
        features = {name: _value(v, codes) for (name, _, _, codes), v in zip(FEATURES, values)}
        diagnosis = LABELS[0] if target > 0 else LABELS[1]
        out.append(Example(_id=f"heartdisease-{i}", **features, diagnosis=diagnosis).with_inputs(*INPUTS))
    return out


def metric(example: Example, prediction, trace=None) -> Score:
    raw = (prediction or {}).get("diagnosis")
    got = str(raw or "").strip().strip(".").lower()
    want = example.diagnosis
    if got == want:
        return Score(1.0, f"Correct: heart disease is {want}.")
    findings = (
        f"chest pain {example.chest_pain_type}, {example.major_vessels} major vessels coloured, "
        f"thallium test {example.thalassemia}, "
        f"exercise-induced angina {example.exercise_induced_angina}, "
        f"ST depression {example.st_depression}, max heart rate {example.max_heart_rate}"
    )
    if got not in LABELS:
        return Score(
            0.0,
            f"The diagnosis {raw!r} is not 'present' or 'absent'. Heart disease is {want} "
            f"in this patient ({findings}).",
        )
    return Score(0.0, f"Wrong: predicted heart disease {got}, but it is {want} in this patient ({findings}).")


def _signature() -> Signature:
    return Signature.parse(
        ", ".join(INPUTS) + " -> diagnosis",
        instruction="Given a patient's clinical measurements, decide whether heart disease is present.",
        descriptions={
            **{name: desc for name, _, desc, _ in FEATURES},
            "diagnosis": "Whether heart disease is present or absent.",
        },
        choices={"diagnosis": LABELS},
    )


TASK = Task(
    name="heartdisease",
    load=load,
    metric=metric,
    programs={"predict": lambda: Predict(_signature()), "cot": lambda: ChainOfThought(_signature())},
    sizes=(60, 60, 150),
    description="UCI Heart Disease (Cleveland) binary diagnosis from 13 features; accuracy.",
    kind="classification",
)
