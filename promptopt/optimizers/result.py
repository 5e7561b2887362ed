"""The result every optimizer returns: candidates, front, budget, learning curve."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from promptopt.core.example import Example
from promptopt.core.program import Program, write_json_atomic
from promptopt.evaluate import format_score, json_safe


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
    # Validation examples this candidate was scored on; one the LM or the metric failed on is absent.
    val_scores: dict[str, float] = field(default_factory=dict)
    iteration: int = 0
    discovered_at: int = 0  # metric calls spent when it was found

    @property
    def val_score(self) -> float:
        """The mean over the examples it was scored on (NaN for none); compare candidates with
        :func:`compare_on_common`, which looks only at the examples both were scored on."""
        return float(np.mean(list(self.val_scores.values()))) if self.val_scores else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Candidate:
        return cls(**data)


def compare_on_common(
    a: Candidate | Mapping[str, float], b: Candidate | Mapping[str, float]
) -> tuple[float, int]:
    """(mean of a's scores minus mean of b's, number of examples) over the examples both were scored
    on, so an example that one of them lost to an LM or metric failure decides nothing."""
    sa = a.val_scores if isinstance(a, Candidate) else a
    sb = b.val_scores if isinstance(b, Candidate) else b
    common = [k for k in sa if k in sb]
    if not common:
        return 0.0, 0
    return sum(sa[k] - sb[k] for k in common) / len(common), len(common)


def best_candidate(candidates: Sequence[Candidate]) -> Candidate:
    """The best candidate, each challenger (in id order) against the best so far on the examples
    both were scored on; ties keep the earlier one. One with scores beats one without; two with no
    example in common keep the earlier one. With complete scores this is the highest mean, lowest id."""
    if not candidates:
        raise ValueError("No candidates to choose from.")
    ordered = sorted(candidates, key=lambda c: c.id)
    best = ordered[0]
    for cand in ordered[1:]:
        if not cand.val_scores:
            continue
        if not best.val_scores:
            best = cand
            continue
        diff, n = compare_on_common(cand, best)
        if n and diff > 0:
            best = cand
    return best


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
    unscored_calls: int = 0  # runs that ended without a score (LM or metric failures); not metric calls

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
        pct = all(0.0 <= v <= 1.0 for c in self.candidates for v in c.val_scores.values())
        unscored = f" ({self.budget.unscored_calls} not scored)" if self.budget.unscored_calls else ""
        return (
            f"{self.optimizer}: validation {format_score(self.seed_score, pct)} -> "
            f"{format_score(self.best_score, pct)} (candidate {self.best_id} of {len(self.candidates)}); "
            f"{self.budget.metric_calls} metric calls{unscored}, {self.budget.lm_calls} LM calls, "
            f"{self.budget.seconds:.0f}s; stopped: {self.stop_reason}"
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
            learning_curve=[(int(a), _float(b)) for a, b in data.get("learning_curve", [])],
            stop_reason=data.get("stop_reason", ""),
            trials=data.get("trials", []),
            config=data.get("config", {}),
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write standard JSON: NaN and infinities (a score of nothing, an unlimited option) become null."""
        return write_json_atomic(path, json_safe(self.to_dict()))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> OptimizationResult:
        return cls.from_dict(json.loads(Path(path).read_text()))


def _float(value: Any) -> float:
    return float("nan") if value is None else float(value)
