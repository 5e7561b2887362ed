"""The run's fixed search space: proposals and demo sets, saved once as JSON.

``RUN_DIR/proposals.json`` is written atomically by the process that prepares
the run; a resumed run and every extra worker read it back, so proposals are
never regenerated and all workers search the same space. Everything that
changes during the search (trials, full evaluations) lives in the Optuna study.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from promptopt.core.example import Example
from promptopt.core.program import write_json_atomic

SETUP_VERSION = 1
SETUP_FILE = "proposals.json"


@dataclass
class Setup:
    """Instruction candidates and demo sets per predictor (index 0 is the seed's own)."""

    train_ids: list[str]
    val_ids: list[str]
    predictors: list[str]
    instructions: dict[str, list[str]]
    demo_sets: dict[str, list[list[dict[str, Any]]]]  # predictor -> sets -> Example.to_dict()
    dataset_summary: str = ""
    program_summary: str = ""
    proposals: list[dict[str, Any]] = field(default_factory=list)  # ProposalLog rows
    seed_scores: dict[str, float] = field(default_factory=dict)  # the seed on the validation set
    metric_calls: int = 0  # teacher runs while bootstrapping
    usage: dict[str, Any] = field(default_factory=dict)
    proposer_calls: int = 0
    seconds: float = 0.0

    @property
    def search_demos(self) -> bool:
        return any(len(sets) > 1 for sets in self.demo_sets.values())

    def components(self, params: dict[str, int]) -> dict[str, Any]:
        """Serialized components of the combination ``params`` (``"<pred>.instruction"`` -> index)."""
        out: dict[str, Any] = {}
        for name in self.predictors:
            out[f"{name}.instruction"] = self.instructions[name][params.get(f"{name}.instruction", 0)]
            out[f"{name}.demos"] = self.demo_sets[name][params.get(f"{name}.demos", 0)]
        return out

    def seed_params(self) -> dict[str, int]:
        return {k: 0 for k in self.param_sizes()}

    def param_sizes(self) -> dict[str, int]:
        """The search dimensions: one instruction index per predictor, one demo-set index when
        there is more than one set."""
        sizes = {f"{n}.instruction": len(self.instructions[n]) for n in self.predictors}
        if self.search_demos:
            sizes.update({f"{n}.demos": len(self.demo_sets[n]) for n in self.predictors})
        return sizes

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["version"] = SETUP_VERSION
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Setup:
        data = dict(data)
        version = data.pop("version", None)
        if version != SETUP_VERSION:
            raise ValueError(
                f"This run directory holds MIPROv2 proposals version {version}; this promptopt reads "
                f"version {SETUP_VERSION}. Start a new run directory."
            )
        return cls(**data)

    def save(self, run_dir: Path) -> None:
        write_json_atomic(run_dir / SETUP_FILE, self.to_dict())

    @classmethod
    def load(cls, run_dir: Path) -> Setup | None:
        path = run_dir / SETUP_FILE
        if not path.exists():
            return None
        return cls.from_dict(json.loads(path.read_text()))


def serialize_demos(demos: list[Example]) -> list[dict[str, Any]]:
    return [d.to_dict() for d in demos]
