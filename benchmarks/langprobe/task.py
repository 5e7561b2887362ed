"""The Task contract: load rows, split them reproducibly, build programs, score predictions."""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptopt import Example, Program


class DataNotFoundError(FileNotFoundError):
    """A task's data is neither in the mirror nor reachable on the hub."""


def mirror_dir(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The data mirror: the argument, ``$PROMPTOPT_DATA_DIR``, or ``shared/data`` beside the checkout."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("PROMPTOPT_DATA_DIR")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "shared" / "data"
        if (candidate / "MANIFEST.json").exists():
            return candidate
    return None


def task_dir(name: str, data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    root = mirror_dir(data_dir)
    if root is not None and (root / name).is_dir():
        return root / name
    return None


@dataclass(frozen=True)
class Splits:
    train: list[Example]
    val: list[Example]
    test: list[Example]

    def ids(self) -> dict[str, list[str]]:
        return {k: [e.id for e in getattr(self, k)] for k in ("train", "val", "test")}


@dataclass
class Task:
    """One benchmark task.

    Attributes:
        name: registry key.
        load: ``load(data_dir) -> list[Example]`` (all rows, inputs marked, stable ids).
        metric: ``metric(example, prediction, trace) -> Score`` with feedback text.
        programs: program name -> factory building a fresh seed program.
        sizes: (train, val, test) sizes drawn, in that order, from one seeded shuffle.
    """

    name: str
    load: Callable[[str | os.PathLike[str] | None], list[Example]]
    metric: Callable[..., Any]
    programs: dict[str, Callable[[], Program]]
    sizes: tuple[int, int, int]
    description: str = ""
    kind: str = "classification"
    load_test: Callable[[str | os.PathLike[str] | None], list[Example]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def splits(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        seed: int = 0,
        sizes: Sequence[int] | None = None,
    ) -> Splits:
        n_train, n_val, n_test = sizes or self.sizes
        rows = _shuffled(self.load(data_dir), f"{self.name}:{seed}")
        if self.load_test is not None:  # an official test file: train/val come from the rest
            test = _shuffled(self.load_test(data_dir), f"{self.name}:test:{seed}")
        else:
            test, rows = rows[n_train + n_val :], rows[: n_train + n_val]
        if n_train + n_val > len(rows) or n_test > len(test):
            raise ValueError(
                f"Task {self.name} cannot draw {n_train}/{n_val}/{n_test} train/val/test examples "
                f"from {len(rows)} train-pool and {len(test)} test-pool rows."
            )
        return Splits(train=rows[:n_train], val=rows[n_train : n_train + n_val], test=test[:n_test])

    def program(self, name: str | None = None) -> Program:
        key = name or next(iter(self.programs))
        if key not in self.programs:
            raise KeyError(f"Task {self.name} has programs {sorted(self.programs)}, not {key!r}.")
        return self.programs[key]()


def _shuffled(rows: list[Example], key: str) -> list[Example]:
    order = list(range(len(rows)))
    random.Random(key).shuffle(order)
    return [rows[i] for i in order]


def load_from_hub(path: str, name: str | None = None, split: str = "test") -> list[dict[str, Any]]:
    """Rows of a Hugging Face dataset (needs internet); used when no mirror holds the task."""
    try:
        import datasets
    except ImportError as exc:
        raise DataNotFoundError(
            f"No local mirror of {path}; set PROMPTOPT_DATA_DIR or pip install 'promptopt[hub]'."
        ) from exc
    try:
        return list(datasets.load_dataset(path, name, split=split))
    except Exception as exc:
        raise DataNotFoundError(
            f"{path} is not in the local mirror and the hub could not be reached ({exc}); "
            "set PROMPTOPT_DATA_DIR to a mirror directory."
        ) from exc
