"""A program's trace as text for a judge, cut into pieces that fit the judge's context.

Event criteria are judged on the steps of a trace (each LM call of a multi-stage program or agent).
A long trace does not fit one judge prompt, so its steps are grouped, in order, into chunks of at
most ``max_chars`` characters; a single step longer than that is cut into pieces of its own. Each
chunk is judged apart (map) and the verdicts are combined per criterion (reduce).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from promptopt.core.trace import TraceEntry


def step_text(index: int, step: TraceEntry | Mapping[str, Any]) -> str:
    """One step as the judge reads it: which predictor, its inputs, its outputs (or its error)."""
    if isinstance(step, TraceEntry):
        name, inputs, outputs, error = step.predictor, step.inputs, step.outputs, step.error
    else:
        name = str(step.get("predictor") or step.get("name") or "step")
        inputs, outputs, error = step.get("inputs") or {}, step.get("outputs"), step.get("error")
    lines = [f"Step {index} ({name})"]
    lines += [f"  input {k}: {_text(v)}" for k, v in inputs.items()]
    if outputs is not None:
        lines += [f"  output {k}: {_text(v)}" for k, v in outputs.items()]
    if error:
        lines.append(f"  error: {error}")
    return "\n".join(lines)


def chunks(steps: Iterable[TraceEntry | Mapping[str, Any]], max_chars: int) -> list[str]:
    """The steps' text in order, grouped into chunks of at most ``max_chars`` characters."""
    if max_chars < 200:
        raise ValueError(f"max_chars={max_chars} leaves no room for a step; use at least 200.")
    out: list[str] = []
    current = ""
    for i, step in enumerate(steps, start=1):
        text = step_text(i, step)
        pieces = [text[k : k + max_chars] for k in range(0, len(text), max_chars)] or [""]
        for piece in pieces:
            joined = f"{current}\n\n{piece}" if current else piece
            if len(joined) <= max_chars:
                current = joined
                continue
            out.append(current)
            current = piece
    if current:
        out.append(current)
    return out


def _text(value: Any) -> str:
    if isinstance(value, str):
        return " ".join(value.split()) if len(value) < 200 else value
    return json.dumps(value, ensure_ascii=False, default=str)


def as_steps(trace: Sequence[Any] | None) -> list[TraceEntry | Mapping[str, Any]]:
    """A trace given as :class:`TraceEntry` objects or as dicts (from a JSONL file), checked."""
    steps = list(trace or [])
    for i, step in enumerate(steps, start=1):
        if not isinstance(step, (TraceEntry, Mapping)):
            raise TypeError(
                f"Step {i} of the trace is a {type(step).__name__}; give TraceEntry objects or dicts."
            )
    return steps
