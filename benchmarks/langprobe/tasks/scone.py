"""ScoNe-NLI: entailment under negation (does the premise entail the hypothesis?).

Six files, one per negation pattern, with train (1002 rows each) and test (200
rows each) splits. As the ScoNe README says, the pair of a file is in the
``sentence1_edited``/``sentence2_edited`` columns with ``gold_label_edited``,
except ``one_scoped.csv`` (taken from MoNLI), which uses ``sentence1``,
``sentence2`` and ``gold_label``. Labels are binary: entailment or neutral.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from langprobe.task import DataNotFoundError, Task, task_dir
from promptopt import ChainOfThought, Example, Predict, Score, Signature

LABELS = ("entailment", "neutral")
CATEGORIES = {
    "no_negation": "there is no negation",
    "one_not_scoped": "one negation, which does not scope over the word that differs",
    "one_scoped": "one negation, which scopes over the word that differs and so reverses the entailment",
    "one_scoped_one_not_scoped": "two negations; only one scopes over the word that differs",
    "two_not_scoped": "two negations, neither of which scopes over the word that differs",
    "two_scoped": "two negations that both scope over the word that differs and cancel each other out",
}


def _clean(text: str) -> str:
    # A few train rows carry stray quotes, a tab, or trailing spaces.
    return " ".join(text.strip().strip('"').split())


def _examples(data_dir: str | os.PathLike[str] | None, split: str) -> list[Example]:
    folder = task_dir("scone", data_dir)
    if folder is None:
        # ScoNe is published on GitHub only; there is no Hugging Face copy to fall back on.
        raise DataNotFoundError(
            "ScoNe is not in the local mirror and is not on the Hugging Face hub; clone "
            "https://github.com/selenashe/ScoNe into <mirror>/scone and set PROMPTOPT_DATA_DIR."
        )
    out = []
    for path in sorted(Path(folder, "scone_nli", split).glob("*.csv")):
        category = path.stem
        suffix = "" if category == "one_scoped" else "_edited"
        with open(path, newline="", encoding="utf-8") as fh:
            for i, r in enumerate(csv.DictReader(fh)):
                out.append(
                    Example(
                        _id=f"scone-{split}-{category}-{i}",
                        premise=_clean(r["sentence1" + suffix]),
                        hypothesis=_clean(r["sentence2" + suffix]),
                        label=r["gold_label" + suffix].strip(),
                        category=category,
                    ).with_inputs("premise", "hypothesis")
                )
    return out


def load(data_dir: str | os.PathLike[str] | None = None) -> list[Example]:
    return _examples(data_dir, "train")


def load_test(data_dir: str | os.PathLike[str] | None = None) -> list[Example]:
    return _examples(data_dir, "test")


def metric(example: Example, prediction, trace=None) -> Score:
    raw = (prediction or {}).get("label")
    got = str(raw or "").strip().strip(".").lower()
    want = example.label
    pattern = f"Negation pattern {example.category}: {CATEGORIES.get(example.category, '')}."
    if got == want:
        return Score(1.0, f"Correct: the label is {want}.")
    if got not in LABELS:
        return Score(
            0.0,
            f"The label {raw!r} is not one of {', '.join(LABELS)}. The correct label is {want}. {pattern}",
        )
    return Score(
        0.0,
        f"Wrong: predicted {got}, but the correct label is {want}. {pattern} "
        "Check which words each negation scopes over before deciding.",
    )


def _signature() -> Signature:
    return Signature.parse(
        "premise, hypothesis -> label",
        instruction=(
            "Decide whether the premise entails the hypothesis. Answer entailment if the hypothesis must be "
            "true whenever the premise is true, and neutral otherwise. Pay close attention to negation."
        ),
        choices={"label": LABELS},
    )


TASK = Task(
    name="scone",
    load=load,
    load_test=load_test,
    metric=metric,
    programs={"predict": lambda: Predict(_signature()), "cot": lambda: ChainOfThought(_signature())},
    sizes=(100, 100, 200),
    description="ScoNe-NLI entailment under scoped negation; accuracy.",
    kind="classification",
)
