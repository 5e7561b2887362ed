"""Benchmark tasks by name: the one place where promptopt reaches a task package.

A task package registers a *task source* (a module) in the ``promptopt.tasks`` entry-point group,
as this project's ``pyproject.toml`` does for the LangProBe tasks::

    [project.entry-points."promptopt.tasks"]
    langprobe = "langprobe.registry"

A source module provides ``TASKS`` (its task names), ``get_task(name)`` returning a :class:`Task`,
and ``task_dir(name, data_dir)``, the folder of the task's files in a local data mirror (``None``
when the rows come from elsewhere). The package is found by name, never imported by promptopt's
modules, because task packages import promptopt: the dependency points one way only.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from promptopt.core.example import Example
    from promptopt.core.program import Program

ENTRY_POINT_GROUP = "promptopt.tasks"
# Found by name when no entry point is installed (an environment installed before the entry point
# was declared, or the sources on PYTHONPATH without an install).
FALLBACK_SOURCES = ("langprobe.registry",)


class Splits(Protocol):
    train: list[Example]
    val: list[Example]
    test: list[Example]

    def ids(self) -> dict[str, list[str]]: ...


class Task(Protocol):
    """What promptopt uses of a task: its name, metric, seed programs and seeded splits."""

    name: str
    metric: Callable[..., Any]
    programs: Mapping[str, Callable[[], Program]]
    sizes: tuple[int, int, int]

    def splits(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        seed: int = 0,
        sizes: Sequence[int] | None = None,
    ) -> Splits: ...

    def program(self, name: str | None = None) -> Program: ...


class UnknownTaskError(KeyError):
    """No installed task source has a task of this name."""

    def __str__(self) -> str:
        return str(self.args[0])


@functools.cache
def _sources() -> tuple[ModuleType, ...]:
    found = [ep.load() for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)]
    if not found:
        for name in FALLBACK_SOURCES:
            try:
                found.append(importlib.import_module(name))
            except ImportError:
                continue
    return tuple(found)


class TaskSource(Protocol):
    """What a task source provides (a module, or an object such as the task apps of a run)."""

    __name__: str
    TASKS: Sequence[str]

    def get_task(self, name: str) -> Task: ...

    def task_dir(self, name: str, data_dir: str | os.PathLike[str] | None = None) -> Path | None: ...


# Sources added while the process runs (task apps named on a command line): no entry point names them.
_added: list[Any] = []


def add_source(source: TaskSource) -> None:
    """Make ``source``'s tasks known to this process, beside the installed ones."""
    if source not in _added:
        _added.append(source)
        _index.cache_clear()


def refresh_sources() -> None:
    """Read the added sources' task names again (a source that grew)."""
    _index.cache_clear()


@functools.cache
def _index() -> dict[str, Any]:
    index: dict[str, Any] = {}
    for source in (*_sources(), *_added):
        for name in source.TASKS:
            if name in index and index[name] is not source:
                raise RuntimeError(
                    f"Task {name!r} is defined by both {index[name].__name__} and {source.__name__}; "
                    f"uninstall one of them (entry-point group {ENTRY_POINT_GROUP!r})."
                )
            index[name] = source
    return index


def task_names() -> tuple[str, ...]:
    """Every installed task's name, in the order its source lists them."""
    return tuple(_index())


def _source_of(name: str) -> Any:
    index = _index()
    if name not in index:
        known = ", ".join(index) or "none: install the langprobe tasks (pip install -e .)"
        raise UnknownTaskError(f"Unknown task {name!r}; tasks: {known}")
    return index[name]


def get_task(name: str) -> Task:
    """The task called ``name``; :class:`UnknownTaskError` names the installed ones otherwise."""
    task: Task = _source_of(name).get_task(name)
    return task


def task_dir(name: str, data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The folder holding task ``name``'s files in the data mirror (``None``: not mirrored)."""
    folder: Path | None = _source_of(name).task_dir(name, data_dir)
    return folder
