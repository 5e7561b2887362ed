"""The result every optimizer returns: candidates, front, budget, learning curve."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from promptopt.core.example import Example
from promptopt.core.program import Program, write_json_atomic


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


@dataclass
class Candidate:
    """One program variant: its components, lineage and per-example validation scores."""

    id: int
    components: dict[str, Any]  # serialized (see serialize_components)
    parents: list[int] = field(default_factory=list)
    origin: str = "seed"
    val_scores: dict[str, float] = field(default_factory=dict)
    iteration: int = 0
    discovered_at: int = 0  # metric calls spent when it was found

    @property
    def val_score(self) -> float:
        return float(np.mean(list(self.val_scores.values()))) if self.val_scores else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Candidate:
        return cls(**data)


@dataclass
class Budget:
    """What a run spent."""

    metric_calls: int = 0
    lm_calls: int = 0
    uncached_lm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    seconds: float = 0.0
    proposer_lm_calls: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Budget:
        return cls(**data)


@dataclass
class OptimizationResult:
    """Everything an optimization run found.

    ``best_program`` is set when the result comes from a run; a result loaded
    from JSON rebuilds it with :meth:`program_for` given the seed program.
    """

    optimizer: str
    candidates: list[Candidate]
    best_id: int
    pareto_front: list[int] = field(default_factory=list)
    budget: Budget = field(default_factory=Budget)
    learning_curve: list[tuple[int, float]] = field(default_factory=list)
    stop_reason: str = ""
    trials: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    best_program: Program | None = field(default=None, repr=False, compare=False)

    @property
    def best_candidate(self) -> Candidate:
        return self.candidates[self.best_id]

    @property
    def best_score(self) -> float:
        return self.best_candidate.val_score

    @property
    def seed_score(self) -> float:
        return self.candidates[0].val_score

    def program_for(self, seed_program: Program, candidate_id: int | None = None) -> Program:
        cand = self.candidates[self.best_id if candidate_id is None else candidate_id]
        return seed_program.with_components(deserialize_components(cand.components))

    def summary(self) -> str:
        return (
            f"{self.optimizer}: validation {100 * self.seed_score:.1f}% -> {100 * self.best_score:.1f}% "
            f"(candidate {self.best_id} of {len(self.candidates)}); {self.budget.metric_calls} metric calls, "
            f"{self.budget.lm_calls} LM calls, {self.budget.seconds:.0f}s; stopped: {self.stop_reason}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer,
            "candidates": [c.to_dict() for c in self.candidates],
            "best_id": self.best_id,
            "pareto_front": self.pareto_front,
            "budget": self.budget.to_dict(),
            "learning_curve": [list(p) for p in self.learning_curve],
            "stop_reason": self.stop_reason,
            "trials": self.trials,
            "config": self.config,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OptimizationResult:
        return cls(
            optimizer=data["optimizer"],
            candidates=[Candidate.from_dict(c) for c in data["candidates"]],
            best_id=data["best_id"],
            pareto_front=list(data.get("pareto_front", [])),
            budget=Budget.from_dict(data.get("budget", {})),
            learning_curve=[(int(a), float(b)) for a, b in data.get("learning_curve", [])],
            stop_reason=data.get("stop_reason", ""),
            trials=data.get("trials", []),
            config=data.get("config", {}),
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        return write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> OptimizationResult:
        return cls.from_dict(json.loads(Path(path).read_text()))
