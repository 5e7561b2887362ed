"""The run's fixed search space: proposals and demo sets, saved once as JSON.

``RUN_DIR/search_space.json`` is written atomically by the process that prepares
the run; a resumed run and every extra worker read it back, so proposals are
never regenerated and all workers search the same space. Everything that
changes during the search (trials, full evaluations) lives in the Optuna study.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from promptopt.core.example import Example
from promptopt.io import write_json_atomic

SEARCH_SPACE_VERSION = 1
SEARCH_SPACE_FILE = "search_space.json"
# The name runs saved before the search space had one name; read when the new name is absent.
LEGACY_SEARCH_SPACE_FILE = "proposals.json"


class DamagedRunError(ValueError):
    """A state file of a MIPROv2 run directory cannot be read back as what the run wrote."""


def damaged(path: Path | str, problem: str, run_dir: Path | None = None) -> DamagedRunError:
    """The error for a damaged state file: which file, what is wrong, and how to start over."""
    if run_dir is None:
        todo = f"To start over, move {path} aside and run again."
    else:
        todo = (
            f"To start the run over, move {run_dir} aside (the damaged file stays there for a look) and "
            "run again, or compile with resume=False, which deletes the run's files."
        )
    return DamagedRunError(f"{path}: {problem}. The MIPROv2 run cannot be resumed from it. {todo}")


@dataclass
class SearchSpace:
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
    metric_calls: int = 0  # the seed on the validation set and the teacher runs while bootstrapping
    bootstrap_calls: int = 0  # of which teacher runs
    usage: dict[str, Any] = field(default_factory=dict)
    proposer_calls: int = 0
    seconds: float = 0.0
    seconds_by_phase: dict[str, float] = field(default_factory=dict)  # bootstrap, validation, proposal

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
        data["version"] = SEARCH_SPACE_VERSION
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchSpace:
        data = dict(data)
        version = data.pop("version", None)
        if version != SEARCH_SPACE_VERSION:
            raise ValueError(
                f"This run directory holds MIPROv2 proposals version {version}; this promptopt reads "
                f"version {SEARCH_SPACE_VERSION}. Start a new run directory."
            )
        return cls(**data)

    def save(self, run_dir: Path) -> None:
        write_json_atomic(run_dir / SEARCH_SPACE_FILE, self.to_dict())

    @classmethod
    def load(cls, run_dir: Path) -> SearchSpace | None:
        """The saved search space, None when there is none; a file that is there but unreadable
        raises :class:`DamagedRunError` (building a new space over it would mix two runs)."""
        path = run_dir / SEARCH_SPACE_FILE
        if not path.exists() and (run_dir / LEGACY_SEARCH_SPACE_FILE).exists():
            path = run_dir / LEGACY_SEARCH_SPACE_FILE
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            # Written atomically, so this is a truncated copy, a disk fault or a hand edit.
            raise damaged(path, f"not valid JSON ({exc})", run_dir) from exc
        problem = _shape_problem(data)
        if problem:
            raise damaged(path, problem, run_dir)
        return cls.from_dict(data)


def _shape_problem(data: Any) -> str | None:
    """What keeps ``data`` from being a saved search space, or None."""
    if not isinstance(data, dict):
        return f"not a MIPROv2 search space (a JSON object), but a JSON {type(data).__name__}"
    if "version" in data and data["version"] != SEARCH_SPACE_VERSION:
        return None  # from_dict says which version it is
    known = {f.name for f in fields(SearchSpace)} | {"version"}
    required = [f.name for f in fields(SearchSpace) if f.default is MISSING and f.default_factory is MISSING]
    missing = [k for k in required if k not in data]
    if missing:
        return f"fields missing from the MIPROv2 search space: {', '.join(missing)}"
    unknown = sorted(set(data) - known)
    if unknown:
        return f"unknown fields in the MIPROv2 search space: {', '.join(unknown)}"
    preds = data["predictors"]
    if not isinstance(preds, list) or not all(isinstance(p, str) for p in preds):
        return "`predictors` is not a list of names"
    for name in ("train_ids", "val_ids"):
        if not isinstance(data[name], list):
            return f"`{name}` is not a list"
    for name in ("instructions", "demo_sets"):
        table = data[name]
        if not isinstance(table, dict) or any(
            not isinstance(table.get(p), list) or not table.get(p) for p in preds
        ):
            return f"`{name}` does not hold a non-empty list for every predictor"
    if any(not isinstance(t, str) for p in preds for t in data["instructions"][p]):
        return "`instructions` holds something other than text"
    if any(not isinstance(s, list) for p in preds for s in data["demo_sets"][p]):
        return "`demo_sets` holds something other than lists of demos"
    if not isinstance(data.get("seed_scores", {}), dict):
        return "`seed_scores` is not an object"
    return None


def serialize_demos(demos: list[Example]) -> list[dict[str, Any]]:
    return [d.to_dict() for d in demos]
