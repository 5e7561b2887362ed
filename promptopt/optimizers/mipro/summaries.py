"""What the instruction proposer is told about the task: a dataset summary and a program summary.

The dataset summary is written by the proposer LM from a few small batches of
training examples (one short observation per batch, then one merged summary).
The program summary is built from the signatures, without an LM: it is exact,
and small models describe code poorly.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from promptopt.core.example import Example
from promptopt.core.program import Program
from promptopt.core.signature import Signature
from promptopt.lm_protocol import LanguageModel

OBSERVE_TEMPLATE = """Here are {n} examples from a dataset:

{examples}

In 2 short sentences, say what task these examples are for and what their inputs and outputs look like.
Reply with the 2 sentences only."""

MERGE_TEMPLATE = """Here are notes about one dataset:

{notes}

Merge them into one summary of at most 3 short sentences. Reply with the summary only."""


def clip(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else str(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def render_example(example: Example, max_chars: int = 200) -> str:
    inputs = example.input_keys if example._input_keys is not None else frozenset()
    parts = [f"{k}: {clip(v, max_chars)}" for k, v in example.items() if k in inputs]
    parts += [f"{k}: {clip(v, max_chars)}" for k, v in example.items() if k not in inputs]
    return "\n".join(parts)


def _reply(lm: LanguageModel, prompt: str, **options: Any) -> str | None:
    """The reply's text, or None when it is empty or cut off at the token limit."""
    completion = lm([{"role": "user", "content": prompt}], **options)
    text = (completion.text or "").strip()
    if not text or completion.truncated:
        return None
    return text


def describe_data(trainset: Sequence[Example]) -> str:
    """A summary without an LM, used when the LM gives no usable one."""
    ex = trainset[0]
    inputs = sorted(ex.input_keys) if ex._input_keys is not None else []
    labels = [k for k in ex if k not in inputs]
    return f"{len(trainset)} examples; inputs: {', '.join(inputs) or 'none'}; labels: {', '.join(labels)}."


def dataset_summary(
    lm: LanguageModel,
    trainset: Sequence[Example],
    *,
    batch_size: int = 5,
    max_batches: int = 2,
    rng: random.Random,
    max_chars: int = 600,
    options: Callable[[str], dict[str, Any]] = lambda key: {},
) -> str:
    """A few sentences about the data, written by ``lm`` from ``max_batches`` random batches.

    ``options(key)`` gives extra LM options per call (e.g. a ``rollout_id``).
    """
    pool = rng.sample(list(trainset), min(len(trainset), batch_size * max_batches))
    notes: list[str] = []
    for b in range(0, len(pool), batch_size):
        batch = pool[b : b + batch_size]
        prompt = OBSERVE_TEMPLATE.format(
            n=len(batch),
            examples="\n\n".join(f"Example {i + 1}:\n{render_example(e)}" for i, e in enumerate(batch)),
        )
        note = _reply(lm, prompt, **options(f"observe-{b}"))
        if note:
            notes.append(clip(note, max_chars))
    if not notes:
        return describe_data(trainset)
    if len(notes) == 1:
        return notes[0]
    merged = _reply(lm, MERGE_TEMPLATE.format(notes="\n".join(f"- {n}" for n in notes)), **options("merge"))
    return clip(merged, max_chars) if merged else notes[0]


def _fields(sig: Signature) -> tuple[str, str]:
    ins = ", ".join(f.name for f in sig.inputs) or "nothing"
    outs = ", ".join(f.name for f in sig.outputs if f.name != "reasoning")
    return ins, outs


def step_role(name: str, sig: Signature) -> str:
    ins, outs = _fields(sig)
    think = " after reasoning step by step" if any(f.name == "reasoning" for f in sig.outputs) else ""
    return f"step `{name}` reads {ins} and writes {outs}{think}"


def program_summary(program: Program) -> str:
    """Each step's role, in definition order, with what feeds it (e.g. ``summary`` from step 1)."""
    preds = program.named_predictors()
    if len(preds) == 1:
        name, p = preds[0]
        return f"The program has one step: {step_role(name, p.signature)}."
    made_by: dict[str, int] = {}
    lines = [f"The program has {len(preds)} steps:"]
    for i, (name, p) in enumerate(preds, start=1):
        fed = [f"{f.name} from step {made_by[f.name]}" for f in p.signature.inputs if f.name in made_by]
        extra = f" (it gets {', '.join(fed)})" if fed else ""
        lines.append(f"{i}. {step_role(name, p.signature)}{extra}.")
        for f in p.signature.outputs:
            made_by.setdefault(f.name, i)
    return "\n".join(lines)
