"""The LM calls of a traced run as training rows see them: the call that produced a program's final
outputs, and a call's messages under the seed program's prompt instead of the candidate's."""

from __future__ import annotations

import logging
import re
from typing import Any

from promptopt.core.adapter import ChatAdapter
from promptopt.core.program import Program
from promptopt.example_run import ExampleResult

log = logging.getLogger("promptopt")


def under_seed_prompt(entry: Any, seed_program: Program, program: Program, adapter: ChatAdapter) -> list[Any]:
    """The messages of ``entry`` as the seed program would have sent them."""
    seed_preds = dict(seed_program.named_predictors())
    if entry.predictor in seed_preds:
        pred = seed_preds[entry.predictor]
        return adapter.format(pred.signature, pred.demos, entry.inputs)
    # A call the program made itself (a task app's): its prompt texts are text components, so the
    # candidate's texts are put back to the seed's where they appear, in one pass (longest first,
    # so a text inside another is not replaced twice).
    seed_texts = {n: c.text for n, c in seed_program.text_components().items()}
    swap = {
        c.text: seed_texts[n]
        for n, c in program.text_components().items()
        if c.text and n in seed_texts and c.text != seed_texts[n]
    }
    if not swap:
        return list(entry.messages)
    pattern = re.compile("|".join(re.escape(t) for t in sorted(swap, key=len, reverse=True)))
    messages, found = [], False
    for message in entry.messages:
        content = message.get("content")
        if isinstance(content, str):
            content, n = pattern.subn(lambda m: swap[m.group(0)], content)
            found = found or n > 0
        messages.append({**message, "content": content})
    if not found:
        log.warning(
            "a %s call holds none of the candidate's texts, so its row keeps the messages it sent "
            "(prompt='seed' cannot put the seed prompt back)",
            entry.predictor,
        )
    return messages


def final_call(res: ExampleResult) -> tuple[str, Any] | None:
    """The last predictor call that rendered a prompt (its outputs are the program's final ones)."""
    for entry in reversed(res.trace):
        if entry.messages:
            return entry.predictor, entry
    return None
