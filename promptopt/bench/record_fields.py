"""Reading stored records: a field that must be there, an object that must be one, and the error that
names what is wrong (the store turns it into :class:`~promptopt.bench.store.UnreadableRecordError`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class RecordError(ValueError):
    """A stored record that lacks a field or holds one of the wrong kind; ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def required(data: Mapping[str, Any], name: str, where: str = "") -> Any:
    if name not in data:
        raise RecordError(f"missing {where}{name}")
    return data[name]


def as_object(value: Any, name: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        kind = f"a JSON {type(value).__name__}, not an object"
        raise RecordError(kind if name == "record" else f"its {name} is {kind}")
    return value
