"""MMLU: four-way multiple-choice questions on 57 subjects.

The mirror's csvs have a header row (question, choice0..choice3, answer) and a
0-based answer index, unlike the original headerless A-D files. Train and val
come from the 285-row dev split (5 per subject), test from the 14,042-row test split.
"""

from __future__ import annotations

import csv
import os
import re
from collections import Counter
from typing import Any

from langprobe.task import Task, load_from_hub, task_dir
from promptopt import ChainOfThought, Example, Predict, Score, Signature

LETTERS = ("A", "B", "C", "D")
INPUTS = ("question", "choices", "subject")


def render_choices(choices: list[str]) -> str:
    return "\n".join(f"{letter}. {text}" for letter, text in zip(LETTERS, choices))


def _rows(data_dir: str | os.PathLike[str] | None, split: str) -> list[dict[str, Any]]:
    folder = task_dir("mmlu", data_dir)
    if folder is None:
        return load_from_hub("cais/mmlu", "all", split=split)
    rows = []
    for path in sorted((folder / split).glob(f"*_{split}.csv")):
        subject = path.name.removesuffix(f"_{split}.csv")
        with open(path, newline="", encoding="utf-8") as fh:
            for r in csv.DictReader(fh):
                choices = [r[f"choice{k}"] for k in range(4)]
                rows.append(
                    {
                        "question": r["question"],
                        "choices": choices,
                        "answer": int(r["answer"]),
                        "subject": subject,
                    }
                )
    return rows


def _examples(rows: list[dict[str, Any]], split: str) -> list[Example]:
    seen: Counter[str] = Counter()
    out = []
    for r in rows:
        subject = r["subject"]
        index = seen[subject]  # numbered within a subject, so adding subjects never renames examples
        seen[subject] += 1
        answer = int(r["answer"])
        out.append(
            Example(
                _id=f"mmlu-{split}-{subject}-{index}",
                question=r["question"].strip(),
                choices=render_choices(list(r["choices"])),
                subject=subject.replace("_", " "),
                answer=LETTERS[answer],
                answer_text=str(r["choices"][answer]),
            ).with_inputs(*INPUTS)
        )
    return out


def load(data_dir: str | os.PathLike[str] | None = None) -> list[Example]:
    return _examples(_rows(data_dir, "dev"), "dev")


def load_test(data_dir: str | os.PathLike[str] | None = None) -> list[Example]:
    return _examples(_rows(data_dir, "test"), "test")


def parse_letter(value: object) -> str | None:
    """The choice letter in an answer such as ``B``, ``(b)`` or ``B. Paris``; None if there is none."""
    text = str(value or "").strip()
    if text.strip("().:").upper() in LETTERS:
        return text.strip("().:").upper()
    m = re.match(r"\(?([A-D])\)?(?:[.):\s]|$)", text)
    return m.group(1) if m else None


def metric(example: Example, prediction, trace=None) -> Score:
    raw = (prediction or {}).get("answer")
    got = parse_letter(raw)
    want = f"{example.answer} ({example.answer_text})"
    if got == example.answer:
        return Score(1.0, f"Correct: the answer is {want}.")
    if got is None:
        return Score(
            0.0,
            f"The answer {raw!r} is not one of the letters A, B, C, D; reply with the letter "
            f"only. The correct answer is {want}.",
        )
    chosen = next((line[3:] for line in example.choices.splitlines() if line.startswith(f"{got}. ")), "")
    return Score(
        0.0,
        f"Wrong: chose {got} ({chosen}), but the correct answer to this {example.subject} "
        f"question is {want}.",
    )


def _signature() -> Signature:
    return Signature.parse(
        "question, choices, subject -> answer",
        instruction="Answer the multiple-choice question by choosing the letter of the correct option.",
        descriptions={
            "choices": "The options, one per line, each prefixed by its letter.",
            "subject": "The academic subject of the question.",
            "answer": "The letter of the correct option.",
        },
        choices={"answer": LETTERS},
    )


TASK = Task(
    name="mmlu",
    load=load,
    load_test=load_test,
    metric=metric,
    programs={"predict": lambda: Predict(_signature()), "cot": lambda: ChainOfThought(_signature())},
    sizes=(50, 50, 200),
    description="MMLU multiple choice over 57 subjects; accuracy.",
    kind="classification",
)
