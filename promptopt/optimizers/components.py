"""A program's components as optimizers handle them: serialized to JSON and back, and the
predictors they belong to."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from promptopt.core.example import Example
from promptopt.core.program import Program


def serialize_components(components: dict[str, Any]) -> dict[str, Any]:
    """Components as JSON: instructions stay strings, demos become example dicts."""
    out: dict[str, Any] = {}
    for key, value in components.items():
        if key.endswith(".demos"):
            out[key] = [d.to_dict() if isinstance(d, Example) else dict(d) for d in value]
        else:
            out[key] = value
    return out


def deserialize_components(components: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in components.items():
        if key.endswith(".demos"):
            out[key] = [Example.from_dict(d) if "fields" in d else Example(**d) for d in value]
        else:
            out[key] = value
    return out


def predictor_names(program: Program) -> list[str]:
    names = [n for n, _ in program.named_predictors()]
    if not names:
        raise ValueError("The program has no predictors to optimize; build it from Predict/ChainOfThought.")
    return names


def with_demo_set(program: Program, demos: Mapping[str, Sequence[Example]]) -> dict[str, Any]:
    """The program's serialized components with each predictor's demos replaced."""
    comps = program.components()
    comps.update({f"{name}.demos": list(items) for name, items in demos.items()})
    return serialize_components(comps)
