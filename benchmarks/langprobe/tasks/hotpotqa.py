"""HotpotQA (distractor setting): answer a multi-hop question from ten given paragraphs.

The mirror holds the first 100 questions of the Hugging Face distractor
validation split (HF layout, no id field); one of them comes with only two
paragraphs. Train, val and test are drawn from those 100. Scored by token F1
against the gold answer (exact match is reported in the feedback).
"""

from __future__ import annotations

import json
import os
import re
import string
from collections import Counter
from typing import Any

from langprobe.task import Task, load_from_hub, task_dir
from promptopt import ChainOfThought, Example, Predict, Prediction, Program, Score, Signature

SIZE = 100
_PUNCTUATION = frozenset(string.punctuation)


def render_context(context: dict[str, list[Any]]) -> str:
    """The paragraphs as ``[title] sentences`` lines."""
    return "\n".join(
        f"[{title}] {''.join(sentences).strip()}"
        for title, sentences in zip(context["title"], context["sentences"])
    )


def load(data_dir: str | os.PathLike[str] | None = None) -> list[Example]:
    folder = task_dir("hotpotqa", data_dir)
    if folder is not None:
        with open(folder / "hotpot_dev_distractor_first100_hfformat.json") as fh:
            rows = json.load(fh)
    else:  # the same 100 questions the mirror holds, so example ids mean the same thing
        rows = load_from_hub("hotpotqa/hotpot_qa", "distractor", split="validation")[:SIZE]
    return [
        Example(
            _id=f"hotpotqa-{i}",
            question=r["question"],
            context=render_context(r["context"]),
            answer=r["answer"],
            supporting_titles=list(dict.fromkeys(r["supporting_facts"]["title"])),
            type=r["type"],
        ).with_inputs("question", "context")
        for i, r in enumerate(rows)
    ]


def normalize_answer(text: object) -> str:
    """SQuAD/HotpotQA answer normalisation: lower case, no punctuation, articles or extra spaces."""
    s = str(text or "").lower()
    s = "".join(ch for ch in s if ch not in _PUNCTUATION)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def exact_match(predicted: object, gold: object) -> float:
    return float(normalize_answer(predicted) == normalize_answer(gold))


def f1(predicted: object, gold: object) -> float:
    """Token F1 as in the official HotpotQA evaluation (yes/no answers must match exactly)."""
    pred, want = normalize_answer(predicted), normalize_answer(gold)
    if (pred in ("yes", "no", "noanswer") or want in ("yes", "no", "noanswer")) and pred != want:
        return 0.0
    common = Counter(pred.split()) & Counter(want.split())
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred.split()), same / len(want.split())
    return 2 * precision * recall / (precision + recall)


def metric(example: Example, prediction, trace=None) -> Score:
    raw = (prediction or {}).get("answer")
    em, score = exact_match(raw, example.answer), f1(raw, example.answer)
    where = f"The supporting facts are in the paragraphs {', '.join(example.supporting_titles)}."
    if em:
        return Score(1.0, f"Correct (EM=1, F1=1): the answer is {example.answer!r}.")
    if not normalize_answer(raw):
        return Score(
            0.0,
            f"The answer is empty ({raw!r}); give a short span. The gold answer is "
            f"{example.answer!r}. {where}",
        )
    return Score(
        score,
        f"EM=0, F1={score:.2f}: answered {raw!r}, the gold answer is {example.answer!r}. "
        f"Answer with the shortest span that answers the question (yes/no for yes-no "
        f"questions). {where}",
    )


def _signature() -> Signature:
    return Signature.parse(
        "question, context -> answer",
        instruction="Answer the question using the paragraphs in the context. Several may be needed.",
        descriptions={
            "context": "Paragraphs, one per line, each starting with its [title].",
            "answer": "A short answer span (a few words), or yes/no.",
        },
    )


class MultiHop(Program):
    """Two stages: gather the supporting facts from the context, then answer from those facts alone."""

    def __init__(self) -> None:
        self.gather = Predict(
            Signature.parse(
                "question, context -> titles: list, facts",
                instruction=(
                    "Find the paragraphs needed to answer the question "
                    "(usually two, linked by a shared entity) "
                    "and write down the facts from them that the answer depends on."
                ),
                descriptions={
                    "context": "Paragraphs, one per line, each starting with its [title].",
                    "titles": "The titles of the relevant paragraphs.",
                    "facts": "The supporting facts, copied or paraphrased from those paragraphs.",
                },
            )
        )
        self.respond = ChainOfThought(
            Signature.parse(
                "question, facts -> answer",
                instruction="Answer the question from the facts.",
                descriptions={"answer": "A short answer span (a few words), or yes/no."},
            )
        )

    def forward(self, question: str, context: str) -> Prediction:
        found = self.gather(question=question, context=context)
        out = self.respond(question=question, facts=found.facts)
        return Prediction(titles=found.titles, facts=found.facts, answer=out.answer)


TASK = Task(
    name="hotpotqa",
    load=load,
    metric=metric,
    programs={
        "predict": lambda: Predict(_signature()),
        "cot": lambda: ChainOfThought(_signature()),
        "multihop": MultiHop,
    },
    sizes=(20, 20, 60),
    description="HotpotQA distractor questions with ten given paragraphs; token F1.",
    kind="qa",
)
