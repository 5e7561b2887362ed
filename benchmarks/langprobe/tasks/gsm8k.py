"""GSM8K: grade-school math word problems with a numeric answer."""

from __future__ import annotations

import json
import os
import re

from langprobe.task import Task, load_from_hub, task_dir
from promptopt import ChainOfThought, Example, Predict, Score, Signature

_NUM = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def parse_number(text: object) -> float | None:
    """The last number in a text (GSM8K answers end with it), commas and $ removed."""
    if isinstance(text, (int, float)):
        return float(text)
    found = _NUM.findall(str(text).replace("$", ""))
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:
        return None


def _rows(folder, split: str) -> list[dict]:
    if folder is not None:
        with open(folder / f"{split}.jsonl") as fh:
            return [json.loads(line) for line in fh if line.strip()]
    return load_from_hub("openai/gsm8k", "main", split=split)


def _examples(rows: list[dict], split: str) -> list[Example]:
    out = []
    for i, r in enumerate(rows):
        solution, _, final = r["answer"].rpartition("####")
        out.append(
            Example(
                _id=f"gsm8k-{split}-{i}",
                question=r["question"],
                answer=final.strip().replace(",", ""),
                solution=solution.strip(),
            ).with_inputs("question")
        )
    return out


def load(data_dir: str | os.PathLike[str] | None = None) -> list[Example]:
    return _examples(_rows(task_dir("gsm8k", data_dir), "train"), "train")


def load_test(data_dir: str | os.PathLike[str] | None = None) -> list[Example]:
    return _examples(_rows(task_dir("gsm8k", data_dir), "test"), "test")


def metric(example: Example, prediction, trace=None) -> Score:
    want = parse_number(example.answer)
    raw = prediction.get("answer")
    got = parse_number(raw)
    if got is not None and want is not None and abs(got - want) < 1e-6:
        return Score(1.0, f"Correct: the answer is {example.answer}.")
    if got is None:
        return Score(
            0.0,
            f"The answer field {raw!r} holds no number; it must be the final number only. "
            f"The correct answer is {example.answer}.",
        )
    return Score(
        0.0,
        f"Wrong: answered {raw!r}, the correct answer is {example.answer}. "
        f"A correct solution: {example.solution}",
    )


def _signature() -> Signature:
    return Signature.parse(
        "question -> answer",
        instruction="Solve the math word problem. Give the final answer as a number.",
        descriptions={"answer": "The final numeric answer only."},
    )


TASK = Task(
    name="gsm8k",
    load=load,
    load_test=load_test,
    metric=metric,
    programs={"cot": lambda: ChainOfThought(_signature()), "predict": lambda: Predict(_signature())},
    sizes=(50, 50, 100),
    description="GSM8K math word problems; numeric answer match.",
    kind="reasoning",
)
