"""A rubric: the criteria a judge scores an output (or each step of a trace) against, with weights.

A criterion has an ``id`` (a short name, used in feedback and in the names of optimizable
components), a ``description`` (what the judge is asked, word for word), a ``weight`` and a
``level``: ``outcome`` criteria are judged on the final output, ``event`` criteria on each step of
the trace (each LM call of a multi-stage program or agent). Rubrics load from TOML or JSON::

    name = "support reply"

    [[criteria]]
    id = "answers"
    description = "The reply answers the customer's question."
    weight = 2

    [[criteria]]
    id = "grounded"
    level = "event"
    description = "The step uses only facts given in its inputs."
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

OUTCOME, EVENT = "outcome", "event"
LEVELS = (OUTCOME, EVENT)
_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


class RubricError(ValueError):
    """A rubric that cannot be used; the message names the criterion or file and what to change."""


@dataclass(frozen=True)
class Criterion:
    id: str
    description: str
    weight: float = 1.0
    level: str = OUTCOME

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "description": self.description, "weight": self.weight, "level": self.level}


@dataclass(frozen=True)
class Rubric:
    """Criteria with ids, descriptions, weights and levels; validated when built."""

    criteria: tuple[Criterion, ...]
    name: str = "rubric"

    def __post_init__(self) -> None:
        object.__setattr__(self, "criteria", tuple(self.criteria))
        _validate(self)

    @property
    def outcome(self) -> tuple[Criterion, ...]:
        return tuple(c for c in self.criteria if c.level == OUTCOME)

    @property
    def event(self) -> tuple[Criterion, ...]:
        return tuple(c for c in self.criteria if c.level == EVENT)

    def __getitem__(self, criterion_id: str) -> Criterion:
        for c in self.criteria:
            if c.id == criterion_id:
                return c
        raise KeyError(f"No criterion {criterion_id!r} in rubric {self.name!r}; it has {self.ids()}.")

    def ids(self) -> list[str]:
        return [c.id for c in self.criteria]

    def weighted_score(self, scores: Mapping[str, float]) -> float:
        """The weighted mean of per-criterion scores in [0, 1] over the criteria in ``scores``."""
        weights = {c.id: c.weight for c in self.criteria if c.id in scores}
        unknown = sorted(set(scores) - set(weights))
        if unknown:
            raise KeyError(f"Scores for criteria not in rubric {self.name!r}: {unknown}.")
        total = sum(weights.values())
        if total <= 0:
            raise ValueError(f"The criteria scored ({sorted(scores)}) have no positive weight.")
        return sum(weights[i] * scores[i] for i in weights) / total

    def with_descriptions(self, descriptions: Mapping[str, str]) -> Rubric:
        """The same rubric with some criteria reworded (by id); calibration changes only the wording."""
        unknown = sorted(set(descriptions) - set(self.ids()))
        if unknown:
            raise RubricError(f"Cannot reword criteria not in rubric {self.name!r}: {unknown}.")
        return Rubric(
            tuple(replace(c, description=descriptions.get(c.id, c.description)) for c in self.criteria),
            self.name,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "criteria": [c.to_dict() for c in self.criteria]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "the rubric") -> Rubric:
        if not isinstance(data, Mapping):
            raise RubricError(f"{source} must be a table with a `criteria` list, not {type(data).__name__}.")
        unknown = sorted(set(data) - {"name", "criteria"})
        if unknown:
            raise RubricError(f"Unknown key {unknown[0]!r} in {source}; a rubric has `name` and `criteria`.")
        raw = data.get("criteria")
        if not isinstance(raw, Sequence) or isinstance(raw, str):
            raise RubricError(f"{source} needs a `criteria` list ([[criteria]] tables in TOML).")
        return cls(
            tuple(_criterion(item, i, source) for i, item in enumerate(raw)), str(data.get("name", "rubric"))
        )

    @classmethod
    def of(cls, criteria: Iterable[Criterion | Mapping[str, Any]], name: str = "rubric") -> Rubric:
        items = [c if isinstance(c, Criterion) else _criterion(c, i, name) for i, c in enumerate(criteria)]
        return cls(tuple(items), name)


def load_rubric(path: str | Path) -> Rubric:
    """A rubric from a ``.toml`` or ``.json`` file; a bad file is a :class:`RubricError` naming it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RubricError(f"Cannot read the rubric {path}: {exc.strerror or exc}.") from exc
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        elif path.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        else:
            raise RubricError(f"The rubric {path} must be a .toml or .json file.")
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise RubricError(f"The rubric {path} is not valid {path.suffix[1:].upper()}: {exc}") from exc
    return Rubric.from_dict(data, source=str(path))


def _criterion(item: Any, index: int, source: str) -> Criterion:
    where = f"criterion {index + 1} of {source}"
    if not isinstance(item, Mapping):
        raise RubricError(f"{where} must be a table with id and description, not {item!r}.")
    unknown = sorted(set(item) - {"id", "description", "weight", "level"})
    if unknown:
        raise RubricError(f"Unknown key {unknown[0]!r} in {where}; use id, description, weight, level.")
    for key in ("id", "description"):
        if not isinstance(item.get(key), str) or not item[key].strip():
            raise RubricError(f"{where} needs a non-empty `{key}`.")
    weight = item.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
        raise RubricError(
            f"The weight of criterion {item['id']!r} in {source} must be a number, not {weight!r}."
        )
    return Criterion(item["id"], item["description"].strip(), float(weight), item.get("level", OUTCOME))


def _validate(rubric: Rubric) -> None:
    if not rubric.criteria:
        raise RubricError(f"Rubric {rubric.name!r} has no criteria.")
    seen: set[str] = set()
    for c in rubric.criteria:
        if not _ID.match(c.id):
            raise RubricError(
                f"Criterion id {c.id!r} in rubric {rubric.name!r} must start with a letter and hold only "
                "letters, digits, '_' and '-'."
            )
        if c.id in seen:
            raise RubricError(f"Criterion id {c.id!r} appears twice in rubric {rubric.name!r}.")
        seen.add(c.id)
        if c.level not in LEVELS:
            raise RubricError(
                f"Criterion {c.id!r} has level {c.level!r}; use {OUTCOME!r} (the final output) or "
                f"{EVENT!r} (each step of the trace)."
            )
        if not math.isfinite(c.weight) or c.weight < 0:
            raise RubricError(
                f"Criterion {c.id!r} has weight {c.weight}; weights are finite and not negative."
            )
    for level in LEVELS:
        weights = [c.weight for c in rubric.criteria if c.level == level]
        if weights and sum(weights) <= 0:
            raise RubricError(
                f"The {level} criteria of rubric {rubric.name!r} have weights summing to {sum(weights)}; "
                "give at least one a positive weight."
            )
