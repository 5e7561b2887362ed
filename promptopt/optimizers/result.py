"""The result every optimizer returns: candidates, front, budget, learning curve."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from promptopt.core.program import Program
from promptopt.evaluate import format_score
from promptopt.io import json_safe, write_json_atomic
from promptopt.optimizers.components import deserialize_components


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
    # The part of the LM calls, tokens and cost above that an LM judge (the metric) made.
    judge_lm_calls: int = 0
    judge_tokens: int = 0
    judge_cost: float = 0.0
    # Where the metric calls went: phase -> calls, adding up to ``metric_calls`` (GEPA: minibatch,
    # tie_extension, validation, merge; MIPROv2 and the demo baselines: bootstrap, minibatch,
    # validation). Empty for optimizers that do not say.
    metric_calls_by_phase: dict[str, int] = field(default_factory=dict)
    # Where the wall time went: phase -> seconds of the steps timed in it (metric-call phases and
    # ``proposal``; see promptopt.optimizers.phase_clock). Steps run at once each count, so the sum
    # can pass ``seconds``. Empty for optimizers that do not say.
    seconds_by_phase: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Budget:
        return cls(**data)


class ResultFormatError(ValueError):
    """A saved result this version cannot read: the message names the file or format and what to do."""


@dataclass(frozen=True)
class OptimizationResult:
    """Everything an optimization run found; frozen once built.

    ``best_program`` is the seed program with the best candidate's components, set when the result
    is built (:meth:`of_run`). A result read back from JSON has it only when the seed program is
    given to :meth:`from_dict` / :meth:`load`; :meth:`program_for` builds any candidate's program.

    Saved results carry ``format`` (:attr:`FORMAT`); :meth:`from_dict` reads every earlier format.
    """

    # 2: the "format" key; budgets count unscored calls; candidates record when they were found.
    # 1: results saved before the format was recorded.
    FORMAT: ClassVar[int] = 2

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

    @classmethod
    def of_run(
        cls,
        seed_program: Program,
        *,
        optimizer: str,
        candidates: list[Candidate],
        best_id: int,
        **details: Any,
    ) -> OptimizationResult:
        """A run's result, with ``best_program`` built from ``seed_program`` and the best candidate."""
        best = seed_program.with_components(deserialize_components(candidates[best_id].components))
        return cls(optimizer=optimizer, candidates=candidates, best_id=best_id, best_program=best, **details)

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
            "format": self.FORMAT,
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
    def from_dict(cls, data: Mapping[str, Any], seed_program: Program | None = None) -> OptimizationResult:
        """Read a saved result of any format up to :attr:`FORMAT`; with ``seed_program``, also
        rebuild ``best_program``."""
        version = data.get("format", 1)
        if not isinstance(version, int) or version < 1:
            raise ResultFormatError(f"A result's format must be a positive integer, not {version!r}.")
        if version > cls.FORMAT:
            raise ResultFormatError(
                f"This result has format {version}, written by a newer promptopt (this one reads up to "
                f"format {cls.FORMAT}): upgrade promptopt to read it."
            )
        current = dict(data)
        for step in range(version, cls.FORMAT):
            current = _MIGRATIONS[step](current)
        result = cls(
            optimizer=current["optimizer"],
            candidates=[Candidate.from_dict(c) for c in current["candidates"]],
            best_id=current["best_id"],
            pareto_front=list(current["pareto_front"]),
            budget=Budget.from_dict(current["budget"]),
            learning_curve=[(int(a), _float(b)) for a, b in current["learning_curve"]],
            stop_reason=current["stop_reason"],
            trials=list(current["trials"]),
            config=dict(current["config"]),
        )
        if seed_program is None:
            return result
        return replace(result, best_program=result.program_for(seed_program))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write standard JSON: NaN and infinities (a score of nothing, an unlimited option) become null."""
        return write_json_atomic(path, json_safe(self.to_dict()))

    @classmethod
    def load(cls, path: str | os.PathLike[str], seed_program: Program | None = None) -> OptimizationResult:
        """Read a saved result (see :meth:`from_dict`); a file that is no result names itself."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ResultFormatError(f"a JSON {type(data).__name__}, not a result")
            return cls.from_dict(data, seed_program)
        except (ValueError, KeyError, TypeError) as exc:
            why = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
            raise ResultFormatError(f"{path} cannot be read as an optimization result: {why}") from exc


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Format 1 results predate several fields: fill each with the value a run then meant."""
    budget = Budget().to_dict() | dict(data.get("budget") or {})
    candidates = []
    for c in data["candidates"]:
        c = {"parents": [], "origin": "seed", "val_scores": {}, "iteration": 0, "discovered_at": 0} | dict(c)
        candidates.append(c)
    return {
        "pareto_front": [],
        "learning_curve": [],
        "stop_reason": "",
        "trials": [],
        "config": {},
        **data,
        "format": 2,
        "budget": budget,
        "candidates": candidates,
    }


# format N -> N + 1
_MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _v1_to_v2}


def _float(value: Any) -> float:
    return float("nan") if value is None else float(value)
