"""GEPA's run state: everything needed to continue a run exactly, as plain JSON."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from promptopt.optimizers.result import Candidate
from promptopt.optimizers.rundir import DamagedStateError
from promptopt.optimizers.stoppers import Progress

STATE_VERSION = 1


def rng_to_json(rng: random.Random) -> list[Any]:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def rng_from_json(data: list[Any]) -> random.Random:
    rng = random.Random()
    rng.setstate((data[0], tuple(data[1]), data[2]))
    return rng


@dataclass
class GEPAState:
    train_ids: list[str]
    val_ids: list[str]
    rng: list[Any]
    candidates: list[Candidate] = field(default_factory=list)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    iteration: int = 0
    sampler_order: list[str] = field(default_factory=list)
    sampler_pos: int = 0
    next_component: dict[str, int] = field(default_factory=dict)
    merges_due: int = 0
    merges_done: int = 0
    tried_merges: list[str] = field(default_factory=list)
    demo_pool: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    learning_curve: list[list[float]] = field(default_factory=list)
    progress: Progress = field(default_factory=Progress)
    usage: dict[str, Any] = field(default_factory=dict)
    phase_seconds: dict[str, float] = field(default_factory=dict)  # wall time per phase (PhaseClock)
    proposer_calls: int = 0
    feedback_calls: int = 0  # predictor feedback asked of the metric while reflecting
    proposer_state: dict[str, Any] = field(default_factory=dict)
    stalled_iterations: int = 0
    demo_seed_done: bool = False  # the seed_demos candidate was made (or could not be)
    seed_staged: bool = False  # the seed's validation waits for, or stopped behind, the demo candidate
    spare_demo_sets: int = 0  # demo sets drawn with a budget too small for a proposal
    spare_reflections: int = 0  # reflections judged on validation stages, on the same budget
    screened_children: int = 0  # children judged on validation stages (iterations and spare steps)
    unscored_calls: int = 0  # runs the LM or the metric failed on; not metric calls
    stop_reason: str = ""
    finished: bool = False

    @classmethod
    def new(cls, train_ids: list[str], val_ids: list[str], seed: int) -> GEPAState:
        return cls(train_ids=train_ids, val_ids=val_ids, rng=rng_to_json(random.Random(seed)))

    @classmethod
    def resumed(
        cls, saved: dict[str, Any], train_ids: list[str], val_ids: list[str], path: Path
    ) -> GEPAState:
        """The state saved in ``path`` (read as ``saved``), for a run on the same examples."""
        try:
            state = cls.from_dict(saved)
        except (KeyError, TypeError, ValueError) as exc:
            raise DamagedStateError(path, f"not a GEPA run state ({type(exc).__name__}: {exc})") from exc
        if state.train_ids != train_ids or state.val_ids != val_ids:
            raise ValueError(
                f"The run in {path.parent} used other training/validation examples; resume with the same "
                "data, or start a new run directory."
            )
        return state

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["version"] = STATE_VERSION
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GEPAState:
        data = dict(data)
        version = data.pop("version", None)
        if version != STATE_VERSION:
            raise ValueError(
                f"This run directory holds GEPA state version {version}; this promptopt reads "
                f"version {STATE_VERSION}. Start a new run directory."
            )
        data["candidates"] = [Candidate.from_dict(c) for c in data["candidates"]]
        data["progress"] = Progress.from_dict(data["progress"])
        return cls(**data)
