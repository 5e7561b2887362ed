"""Name -> Task for every LangProBe task: the task source promptopt finds through its
``promptopt.tasks`` entry point (``TASKS``, ``get_task``, ``task_dir``)."""

from __future__ import annotations

import importlib

from langprobe.task import Task, task_dir

__all__ = ["TASKS", "get_task", "task_dir"]

_MODULES = {
    name: f"langprobe.tasks.{name}"
    for name in (
        "iris",
        "heartdisease",
        "gsm8k",
        "math",
        "mmlu",
        "scone",
        "hover",
        "hotpotqa",
        "ifbench",
        "pupa",
        "irera_esco",
        "humaneval",
        "llmbar",
    )
}
TASKS = tuple(_MODULES)


def get_task(name: str) -> Task:
    if name not in _MODULES:
        raise KeyError(f"Unknown task {name!r}; tasks: {', '.join(_MODULES)}")
    return importlib.import_module(_MODULES[name]).TASK
