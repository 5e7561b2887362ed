"""Task apps as benchmark tasks: ``python -m promptopt.bench langprobe --task-app NAME=URL``.

A task app is a task like LangProBe's: its metric is the app's own score (:func:`rollout_score`),
its one program (``app``) is the app with its prompts as components, and its splits are the ids the
app lists (a run's ``sizes`` keep the first N of each; the app, not a seed, decides the order).
The app is connected on first use, with a proxy that answers with the task LM of the code that runs
the program, so every cell, whatever its LM, shares one connection.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from promptopt.core.program import Program
from promptopt.task_apps.program import TaskApp, TaskAppSplits, rollout_score

TOKEN_ENV = "PROMPTOPT_TASK_APP_TOKEN"  # a bearer token is a secret: never part of a stored spec
PROGRAM = "app"


class TaskAppTask:
    """One task app, reached at ``url``, as a :class:`promptopt.tasks.Task`."""

    metric = staticmethod(rollout_score)

    def __init__(self, name: str, url: str, *, token: str | None = None, timeout: float = 120.0) -> None:
        self.name, self.url, self.token, self.timeout = name, url, token, timeout
        self._app: TaskApp | None = None
        self._lock = threading.Lock()

    @property
    def app(self) -> TaskApp:
        with self._lock:
            if self._app is None:
                self._app = TaskApp.connect(self.url, token=self.token, timeout=self.timeout)
            return self._app

    @property
    def programs(self) -> Mapping[str, Callable[[], Program]]:
        return {PROGRAM: self.app.program}

    @property
    def sizes(self) -> tuple[int, int, int]:
        splits = self.app.info.splits
        return (len(splits["train"]), len(splits["validation"]), len(splits["test"]))

    def splits(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        seed: int = 0,
        sizes: Sequence[int] | None = None,
    ) -> TaskAppSplits:
        full = self.app.examples()
        if sizes is None:
            return full
        wanted = dict(zip(("train", "val", "test"), sizes, strict=True))
        for split, n in wanted.items():
            have = len(getattr(full, split))
            if n > have:
                raise ValueError(
                    f"The task app {self.name!r} ({self.url}) has {have} {split} examples, fewer than "
                    f"the {n} asked for; ask for at most {self.sizes} (train, val, test)."
                )
        return TaskAppSplits(
            full.train[: wanted["train"]], full.val[: wanted["val"]], full.test[: wanted["test"]]
        )

    def program(self, name: str | None = None) -> Program:
        if name not in (None, PROGRAM):
            raise KeyError(f"The task app {self.name!r} has one program, {PROGRAM!r}, not {name!r}.")
        return self.app.program()

    def identity(self) -> dict[str, Any]:
        """What the cells of this task depend on besides the example ids (see bench identity)."""
        info = self.app.info
        return {"task_app": info.name, "components": dict(info.components)}

    def close(self) -> None:
        with self._lock:
            if self._app is not None:
                self._app.close()
                self._app = None


class TaskAppSource:
    """The task apps of a run, as a task source (see :func:`promptopt.tasks.add_source`)."""

    __name__ = "promptopt.task_apps.task"

    def __init__(self, apps: Mapping[str, str], *, token: str | None = None) -> None:
        self.urls = dict(apps)
        token = token if token is not None else os.environ.get(TOKEN_ENV)
        self.tasks = {name: TaskAppTask(name, url, token=token) for name, url in self.urls.items()}

    @property
    def TASKS(self) -> tuple[str, ...]:  # noqa: N802 - the name every task source uses
        return tuple(self.tasks)

    def get_task(self, name: str) -> TaskAppTask:
        return self.tasks[name]

    def task_dir(self, name: str, data_dir: Any = None) -> Path | None:
        return None  # the app holds its data: the examples' ids identify them

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TaskAppSource) and other.urls == self.urls

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.urls.items())))


_sources: dict[tuple[tuple[str, str], ...], TaskAppSource] = {}


def register_task_apps(apps: Mapping[str, str]) -> None:
    """Make each ``name -> url`` task app a task of this process (once per set of apps)."""
    from promptopt.tasks import add_source

    key = tuple(sorted(apps.items()))
    if key and key not in _sources:
        _sources[key] = TaskAppSource(apps)
        add_source(_sources[key])
