"""LLMBar (MIT): pairwise judgments of instruction following with gold labels, for judges.

Each row is an instruction (LLMBar's ``input``, here ``instruction``), two outputs and the label of
the one that follows the instruction better (1 or 2). ``natural`` holds 100 pairs from existing
preference data; the four ``adversarial_*`` subsets (319 pairs) were built so that the worse output
looks more polished: they are where judges fail, so every example keeps its ``subset`` and reports
show the subsets apart.
The program is a :class:`~promptopt.verifiers.PairwiseJudge`; the metric rewards agreement with the
label in both orders of the outputs (a position-following verdict is a tie, worth 0.5).
"""

from __future__ import annotations

import json
import os

from langprobe.task import DataNotFoundError, Task, task_dir
from promptopt import Example
from promptopt.verifiers import PairwiseJudge, agreement_with_label

SUBSETS = (
    "natural",
    "adversarial_neighbor",
    "adversarial_gptinst",
    "adversarial_gptout",
    "adversarial_manual",
)


def load(data_dir: str | os.PathLike[str] | None = None) -> list[Example]:
    folder = task_dir("llmbar", data_dir)
    if folder is None:
        raise DataNotFoundError(
            "LLMBar is read from the data mirror (llmbar/ in $PROMPTOPT_DATA_DIR or shared/data); it has no "
            "hub copy here. Put the LLMBar dataset files there (see MANIFEST.json)."
        )
    rows = []
    for subset in SUBSETS:
        for i, r in enumerate(json.loads((folder / f"{subset}.json").read_text(encoding="utf-8"))):
            rows.append(
                Example(
                    _id=f"llmbar-{subset}-{i}",
                    instruction=r["input"],
                    output_1=r["output_1"],
                    output_2=r["output_2"],
                    label=int(r["label"]),
                    subset=subset,
                ).with_inputs("instruction", "output_1", "output_2")
            )
    return rows


def _judge() -> PairwiseJudge:
    return PairwiseJudge()


TASK = Task(
    name="llmbar",
    load=load,
    metric=agreement_with_label,
    programs={"pairwise": _judge},
    sizes=(40, 40, 100),
    description="LLMBar pairwise instruction-following judgments; agreement with the gold label.",
    kind="judge",
)
