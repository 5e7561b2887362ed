"""Typed signatures: what a predictor reads, what it writes, and its instruction."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

FIELD_TYPES = ("str", "int", "float", "bool", "list")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Field:
    """One input or output field.

    ``type`` is one of ``str, int, float, bool, list``; ``choices`` restricts a
    ``str`` output to a closed set (parsing maps the model's text onto it).
    """

    name: str
    desc: str = ""
    type: str = "str"
    choices: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"Field name {self.name!r} must be a Python identifier.")
        if self.type not in FIELD_TYPES:
            raise ValueError(f"Field {self.name!r} has type {self.type!r}; use one of {FIELD_TYPES}.")
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(str(c) for c in self.choices))

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "desc": self.desc, "type": self.type}
        if self.choices is not None:
            data["choices"] = list(self.choices)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Field:
        choices = data.get("choices")
        return cls(
            name=data["name"],
            desc=data.get("desc", ""),
            type=data.get("type", "str"),
            choices=tuple(choices) if choices is not None else None,
        )


def _as_field(spec: str | Field) -> Field:
    if isinstance(spec, Field):
        return spec
    spec = spec.strip()
    name, _, type_ = spec.partition(":")
    return Field(name=name.strip(), type=type_.strip() or "str")


@dataclass(frozen=True)
class Signature:
    """Inputs, outputs and the instruction of one predictor.

    Build one from a string, ``Signature.parse("question -> answer")``, with
    optional types, ``"question, context -> answer: int"``.
    """

    inputs: tuple[Field, ...]
    outputs: tuple[Field, ...]
    instruction: str = ""
    _field_names: tuple[str, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.outputs:
            raise ValueError("A signature needs at least one output field.")
        names = [f.name for f in (*self.inputs, *self.outputs)]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"Field names must be unique within a signature; repeated: {dupes}")
        object.__setattr__(self, "_field_names", tuple(names))

    @classmethod
    def parse(
        cls,
        spec: str,
        instruction: str = "",
        descriptions: Mapping[str, str] | None = None,
        choices: Mapping[str, Sequence[str]] | None = None,
    ) -> Signature:
        if "->" not in spec:
            raise ValueError(
                f"Signature {spec!r} needs '->' between inputs and outputs, e.g. 'question -> answer'."
            )
        left, right = spec.split("->", 1)
        descriptions = dict(descriptions or {})
        choices = dict(choices or {})

        def build(part: str) -> tuple[Field, ...]:
            out = []
            for raw in filter(None, (p.strip() for p in part.split(","))):
                f = _as_field(raw)
                out.append(
                    replace(
                        f,
                        desc=descriptions.get(f.name, f.desc),
                        choices=tuple(choices[f.name]) if f.name in choices else f.choices,
                    )
                )
            return tuple(out)

        sig = cls(inputs=build(left), outputs=build(right), instruction=instruction)
        if not sig.instruction:
            sig = sig.with_instruction(sig.default_instruction())
        return sig

    @classmethod
    def make(
        cls,
        inputs: Iterable[str | Field],
        outputs: Iterable[str | Field],
        instruction: str = "",
    ) -> Signature:
        sig = cls(
            inputs=tuple(_as_field(f) for f in inputs),
            outputs=tuple(_as_field(f) for f in outputs),
            instruction=instruction,
        )
        return sig if instruction else sig.with_instruction(sig.default_instruction())

    def default_instruction(self) -> str:
        ins = ", ".join(f"`{f.name}`" for f in self.inputs) or "nothing"
        outs = ", ".join(f"`{f.name}`" for f in self.outputs)
        return f"Given the fields {ins}, produce the fields {outs}."

    @property
    def input_names(self) -> list[str]:
        return [f.name for f in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [f.name for f in self.outputs]

    def with_instruction(self, instruction: str) -> Signature:
        return replace(self, instruction=instruction)

    def prepend_output(self, f: Field) -> Signature:
        if f.name in self._field_names:
            return self
        return replace(self, outputs=(f, *self.outputs))

    def with_descriptions(self, **descs: str) -> Signature:
        def upd(fields: tuple[Field, ...]) -> tuple[Field, ...]:
            return tuple(replace(f, desc=descs.get(f.name, f.desc)) for f in fields)

        return replace(self, inputs=upd(self.inputs), outputs=upd(self.outputs))

    def to_dict(self) -> dict[str, Any]:
        return {
            "instruction": self.instruction,
            "inputs": [f.to_dict() for f in self.inputs],
            "outputs": [f.to_dict() for f in self.outputs],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signature:
        return cls(
            inputs=tuple(Field.from_dict(f) for f in data["inputs"]),
            outputs=tuple(Field.from_dict(f) for f in data["outputs"]),
            instruction=data.get("instruction", ""),
        )

    def __str__(self) -> str:
        return f"{', '.join(self.input_names)} -> {', '.join(self.output_names)}"


def ensure_signature(spec: str | Signature, instruction: str | None = None) -> Signature:
    sig = spec if isinstance(spec, Signature) else Signature.parse(spec)
    return sig.with_instruction(instruction) if instruction else sig
