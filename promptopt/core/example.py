"""Examples and predictions: the data that flows through a program.

An :class:`Example` is a mapping of named fields plus the set of those fields
that are *inputs* (what the program sees); the rest are *labels* (what the
metric compares against). A :class:`Prediction` is the mapping of output
fields a program returns.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

# The default text form of an object names its memory address, which differs in every process.
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


class UnstableIdError(ValueError):
    """An example's content has no text form that is the same in every process."""


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=_stable_default)


def _stable_default(value: Any) -> Any:
    """The JSON stand-in of a value JSON cannot hold: a set becomes its sorted members (its iteration
    order changes with the process's string hashing); any other object its ``str``, as before, when
    that does not name a memory address."""
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=_canonical)
    text = str(value)
    if _ADDRESS.search(text):
        raise UnstableIdError(type(value).__name__)
    return text


class Example(Mapping[str, Any]):
    """A data point: named fields, some of which are marked as inputs.

    ``Example(question="2+2?", answer="4").with_inputs("question")``.
    ``id`` is stable across processes: it is given explicitly (``_id=...`` or
    :meth:`with_id`) or derived from the content (sets by their sorted members,
    other objects by their ``str``), so results can name the examples they scored
    and a resumed run can recognise its data. A field whose ``str`` names a memory
    address makes the derived id an error that asks for an explicit one.
    """

    __slots__ = ("_fields", "_id", "_input_keys")

    def __init__(self, _id: str | None = None, **fields: Any) -> None:
        self._fields: dict[str, Any] = dict(fields)
        self._input_keys: frozenset[str] | None = None
        self._id = _id

    # Mapping protocol -------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        return self._fields[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._fields[name]
        except KeyError:
            raise AttributeError(
                f"Example has no field {name!r}; fields are {sorted(self._fields)}"
            ) from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Example):
            return NotImplemented
        return self._fields == other._fields and self._input_keys == other._input_keys

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        inputs = sorted(self._input_keys) if self._input_keys is not None else None
        return f"Example({self._fields!r}, inputs={inputs})"

    # Inputs and labels -------------------------------------------------
    def with_inputs(self, *keys: str) -> Example:
        """Return a copy with ``keys`` marked as the program's inputs."""
        missing = [k for k in keys if k not in self._fields]
        if missing:
            raise KeyError(
                f"with_inputs names fields this example lacks: {missing}; "
                f"its fields are {sorted(self._fields)}"
            )
        new = self.copy()
        new._input_keys = frozenset(keys)
        return new

    @property
    def input_keys(self) -> frozenset[str]:
        if self._input_keys is None:
            raise ValueError(
                "This example has no inputs marked; call .with_inputs('field', ...) "
                "so the program knows which fields it may see."
            )
        return self._input_keys

    def inputs(self) -> dict[str, Any]:
        return {k: self._fields[k] for k in self._fields if k in self.input_keys}

    def labels(self) -> dict[str, Any]:
        return {k: v for k, v in self._fields.items() if k not in self.input_keys}

    @property
    def id(self) -> str:
        if self._id is None:
            try:
                blob = _canonical(self._fields)
            except UnstableIdError as exc:
                field = next((k for k, v in self._fields.items() if _unstable(v)), "?")
                raise UnstableIdError(
                    f"Example field {field!r} holds a {exc} whose text form changes from process to "
                    "process, so no stable id can be derived from the example's content; give the "
                    "example an explicit id: Example(_id='...', ...) or example.with_id('...')."
                ) from None
            self._id = hashlib.sha256(blob.encode()).hexdigest()[:16]
        return self._id

    def with_id(self, id: str) -> Example:
        """A copy with an explicit, stable ``id`` (for fields whose content cannot name it)."""
        new = self.copy()
        new._id = str(id)
        return new

    def copy(self, **updates: Any) -> Example:
        new = Example(_id=self._id if not updates else None, **{**self._fields, **updates})
        new._input_keys = self._input_keys
        return new

    def without(self, *keys: str) -> Example:
        new = Example(**{k: v for k, v in self._fields.items() if k not in keys})
        if self._input_keys is not None:
            new._input_keys = self._input_keys - set(keys)
        return new

    def toDict(self) -> dict[str, Any]:  # noqa: N802 - DSPy users know this name
        return dict(self._fields)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "fields": dict(self._fields),
            "inputs": sorted(self._input_keys) if self._input_keys is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Example:
        ex = cls(_id=data.get("id"), **data["fields"])
        if data.get("inputs") is not None:
            ex._input_keys = frozenset(data["inputs"])
        return ex


class Prediction(Mapping[str, Any]):
    """The output fields a program returned, readable as attributes or keys."""

    __slots__ = ("_fields",)

    def __init__(self, **fields: Any) -> None:
        self._fields = dict(fields)

    def __getitem__(self, key: str) -> Any:
        return self._fields[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._fields[name]
        except KeyError:
            raise AttributeError(
                f"Prediction has no field {name!r}; fields are {sorted(self._fields)}"
            ) from None

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Prediction):
            return self._fields == other._fields
        if isinstance(other, Mapping):
            return self._fields == dict(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"Prediction({self._fields!r})"

    def to_dict(self) -> dict[str, Any]:
        return dict(self._fields)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Prediction:
        return cls(**data)


def _unstable(value: Any) -> bool:
    try:
        _canonical(value)
    except UnstableIdError:
        return True
    return False


def as_examples(rows: Iterable[Mapping[str, Any]], inputs: Iterable[str]) -> list[Example]:
    """Turn plain dict rows into examples with the given input fields."""
    keys = tuple(inputs)
    return [Example(**dict(row)).with_inputs(*keys) for row in rows]
