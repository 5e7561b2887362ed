"""What a LangProBe cell's result depends on besides its data, LMs and code."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from promptopt.bench.record_fields import as_object, required


@dataclass(frozen=True)
class CellConfig:
    """What a cell's result depends on besides data, LMs and code (see :mod:`promptopt.bench.identity`).

    A seed-program cell (optimizer ``baseline``) has budget 0 and no helper LMs.
    """

    task: str
    program: str
    optimizer: str
    lm: str
    seed: int
    budget: int = 0
    reflection_lm: str | None = None
    proposer_lm: str | None = None
    sizes: tuple[int, ...] = ()
    split_seed: int = 0
    max_tokens: int | None = None
    optimizer_options: Mapping[str, Any] = field(default_factory=dict)
    lm_cache: str = "shared"  # cells written before the option existed shared one cache

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "program": self.program,
            "optimizer": self.optimizer,
            "lm": self.lm,
            "seed": self.seed,
            "budget": self.budget,
            "reflection_lm": self.reflection_lm,
            "proposer_lm": self.proposer_lm,
            "sizes": list(self.sizes),
            "split_seed": self.split_seed,
            "max_tokens": self.max_tokens,
            "optimizer_options": dict(self.optimizer_options),
            "lm_cache": self.lm_cache,
        }

    @classmethod
    def from_dict(cls, data: Any) -> CellConfig:
        data = as_object(data, "config")
        names = ("task", "program", "optimizer", "lm", "seed")
        present = {name: required(data, name, "config.") for name in names}
        return cls(
            **present,
            budget=data.get("budget") or 0,
            reflection_lm=data.get("reflection_lm"),
            proposer_lm=data.get("proposer_lm"),
            sizes=tuple(data.get("sizes") or ()),
            split_seed=data.get("split_seed", present["seed"]),
            max_tokens=data.get("max_tokens"),
            optimizer_options=dict(data.get("optimizer_options") or {}),
            lm_cache=data.get("lm_cache", "shared"),
        )

    def baseline_part(self) -> dict[str, Any]:
        """The part of the config the seed program's scores depend on (shared by the cell's optimizers)."""
        keep = ("task", "program", "lm", "seed", "sizes", "split_seed", "max_tokens")
        full = self.to_dict()
        return {k: full[k] for k in keep}
