"""IFBench: answer a request while following hard-to-game output constraints (300 prompts).

The score is the fraction of the row's checkable instructions the response
follows (IFBench's per-instruction accuracy, averaged within a row);
instructions in :data:`ifbench_checks.UNCHECKED` are left out of the fraction,
and the rows that have no other instruction (5 of the 300, all
``words:start_verb``) are not loaded, so :func:`load` returns 295 examples.
"""

from __future__ import annotations

import json
import os
from typing import Any

from langprobe.task import Task, load_from_hub, task_dir
from langprobe.tasks.ifbench_checks import UNCHECKED, check_all
from promptopt import Example, Predict, Prediction, Program, Score, Signature


def _rows(folder) -> list[dict[str, Any]]:
    if folder is not None:
        with open(folder / "IFBench_test.jsonl", encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]
    return load_from_hub("allenai/IFBench_test", split="train")


def load(data_dir: str | os.PathLike[str] | None = None) -> list[Example]:
    rows = [
        r
        for r in _rows(task_dir("ifbench", data_dir))
        if any(i not in UNCHECKED for i in r["instruction_id_list"])
    ]
    return [
        Example(
            _id=f"ifbench-{r['key']}",
            prompt=r["prompt"],
            instruction_id_list=list(r["instruction_id_list"]),
            # Every row carries all ~40 kwarg names; keep the ones this row sets.
            kwargs=[{k: v for k, v in kw.items() if v is not None} for kw in r["kwargs"]],
        ).with_inputs("prompt")
        for r in rows
    ]


def metric(example: Example, prediction, trace=None) -> Score:
    response = prediction.get("response") if hasattr(prediction, "get") else None
    ids = list(example.instruction_id_list)
    if not isinstance(response, str) or not response.strip():
        need = "; ".join(ids)
        return Score(0.0, f"The response is empty or missing, so no instruction was followed ({need}).")
    results = [r for r in check_all(response, ids, example.kwargs) if r.passed is not None]
    skipped = [i for i in ids if i in UNCHECKED]
    note = f" (not checked automatically: {', '.join(skipped)})" if skipped else ""
    if not results:
        return Score(1.0, f"No instruction of this prompt can be checked automatically{note}.")
    passed = [r for r in results if r.passed]
    failed = [r for r in results if not r.passed]
    head = f"Followed {len(passed)} of {len(results)} instructions{note}."
    if not failed:
        done = "; ".join(f"{r.instruction_id} ({r.detail})" for r in passed)
        return Score(1.0, f"{head} All followed: {done}")
    lines = [f"- FAILED {r.instruction_id}; requirement: {r.detail}." for r in failed]
    lines += [f"- ok {r.instruction_id}." for r in passed]
    return Score(len(passed) / len(results), head + "\n" + "\n".join(lines))


def _signature() -> Signature:
    return Signature.parse(
        "prompt -> response",
        instruction="Respond to the request. Follow every constraint it states on the form of the response "
        "(length, counts, keywords, formatting) exactly; the constraints matter more than style.",
        descriptions={"response": "The complete response to the request, and nothing else."},
    )


class GenerateThenRevise(Program):
    """Draft a response, then revise the draft so it satisfies every stated constraint."""

    def __init__(self) -> None:
        self.draft = Predict(
            Signature.parse(
                "prompt -> draft",
                instruction="Write a response to the request, trying to follow all of its constraints.",
                descriptions={"draft": "A first full response to the request."},
            )
        )
        self.revise = Predict(
            Signature.parse(
                "prompt, draft -> response",
                instruction="The draft answers the request but may break some of its constraints. List each "
                "constraint to yourself, check the draft against it, and rewrite the draft so that every "
                "constraint is met exactly. Output only the final response.",
                descriptions={"response": "The revised response that satisfies every constraint."},
            )
        )

    def forward(self, prompt: str) -> Prediction:
        draft = self.draft(prompt=prompt).draft
        revised = self.revise(prompt=prompt, draft=draft).response
        return Prediction(response=revised, draft=draft)


TASK = Task(
    name="ifbench",
    load=load,
    metric=metric,
    programs={"predict": lambda: Predict(_signature()), "generate_then_revise": GenerateThenRevise},
    sizes=(50, 50, 195),
    description="IFBench out-of-distribution instruction following; fraction of verifiable constraints met.",
    kind="generation",
)
