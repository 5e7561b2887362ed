"""HoVer: classify a multi-hop claim about Wikipedia as SUPPORTED or NOT_SUPPORTED.

The mirror holds no evidence documents (HoVer gives supporting facts only as
(title, sentence index) pairs, and the Wikipedia corpus is absent), so this is
claim-only verification: the program sees the claim and nothing else, and must
rely on what the model knows. The test release has no labels, so train, val and
test are drawn from the 4,000 labelled dev claims. Of those, 18 claims occur
twice; the second copy is dropped so no claim sits in two splits, and the one
claim whose copies disagree on the label is dropped entirely: 3,981 rows remain.
"""

from __future__ import annotations

import json
import os
from typing import Any

from langprobe.task import Task, load_from_hub, task_dir
from promptopt import ChainOfThought, Example, Predict, Score, Signature

LABELS = ("SUPPORTED", "NOT_SUPPORTED")
HUB_LABELS = ("NOT_SUPPORTED", "SUPPORTED")  # the ClassLabel order of hover-nlp/hover


def _rows(data_dir: str | os.PathLike[str] | None) -> list[dict[str, Any]]:
    folder = task_dir("hover", data_dir)
    if folder is not None:
        with open(folder / "hover_dev_release_v1.1.json") as fh:
            return json.load(fh)
    return load_from_hub("hover-nlp/hover", split="validation")


def _titles(facts: Any) -> list[str]:
    # The release has [title, sentence] pairs; the hub has {"key": title, "value": sentence}.
    titles = [f["key"] if isinstance(f, dict) else f[0] for f in facts or []]
    return list(dict.fromkeys(titles))


def load(data_dir: str | os.PathLike[str] | None = None) -> list[Example]:
    rows = _rows(data_dir)
    labels: dict[str, set[str]] = {}
    for r in rows:
        label = r["label"] if isinstance(r["label"], str) else HUB_LABELS[int(r["label"])]
        r["label"] = label
        labels.setdefault(r["claim"], set()).add(label)
    out, seen = [], set()
    for i, r in enumerate(rows):
        claim = r["claim"]
        if claim in seen or len(labels[claim]) > 1:
            continue
        seen.add(claim)
        out.append(
            Example(
                _id=f"hover-{i}",
                claim=claim.strip(),
                label=r["label"],
                num_hops=int(r["num_hops"]),
                supporting_titles=_titles(r.get("supporting_facts")),
            ).with_inputs("claim")
        )
    return out


def metric(example: Example, prediction, trace=None) -> Score:
    raw = (prediction or {}).get("label")
    got = str(raw or "").strip().strip(".").upper().replace(" ", "_")
    want = example.label
    evidence = (
        f"Verifying it takes {example.num_hops} hops across the Wikipedia articles "
        f"{', '.join(example.supporting_titles)}."
    )
    if got == want:
        return Score(1.0, f"Correct: the claim is {want}.")
    if got not in LABELS:
        return Score(
            0.0, f"The label {raw!r} is not SUPPORTED or NOT_SUPPORTED. The claim is {want}. {evidence}"
        )
    hint = (
        "every part of it is true"
        if want == "SUPPORTED"
        else "at least one of its details is false or unsupported"
    )
    return Score(0.0, f"Wrong: predicted {got}, but the claim is {want}: {hint}. {evidence}")


def _signature() -> Signature:
    return Signature.parse(
        "claim -> label",
        instruction=(
            "Decide whether the claim about Wikipedia entities is fully supported by the facts. Answer "
            "SUPPORTED only if every part of the claim is true; otherwise answer NOT_SUPPORTED."
        ),
        choices={"label": LABELS},
    )


TASK = Task(
    name="hover",
    load=load,
    metric=metric,
    programs={"predict": lambda: Predict(_signature()), "cot": lambda: ChainOfThought(_signature())},
    sizes=(100, 100, 300),
    description="HoVer claim verification from the claim alone (no evidence documents); accuracy.",
    kind="classification",
)
