"""Task apps as benchmark tasks: ``python -m promptopt.bench langprobe --task-app NAME=URL``.

A task app is a task like LangProBe's: its metric is the app's own score (:func:`rollout_score`),
its one program (``app``) is the app with its prompts as components, and its splits are the ids the
app lists (a run's ``sizes`` keep the first N of each; the app, not a seed, decides the order).
The app is connected on first use, with a proxy that answers with the task LM of the code that runs
the program, so every cell, whatever its LM, shares one connection.
"""

from __future__ import annotations

import atexit
import hashlib
import json
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
        splits = json.dumps({k: list(v) for k, v in info.splits.items()}, sort_keys=True)
        return {
            "task_app": info.name,
            "components": dict(info.components),
            "split_ids_sha256": hashlib.sha256(splits.encode()).hexdigest(),
        }

    def close(self) -> None:
        with self._lock:
            if self._app is not None:
                self._app.close()
                self._app = None


class TaskAppSource:
    """The task apps this process knows, as a task source (see :func:`promptopt.tasks.add_source`)."""

    __name__ = "promptopt.task_apps.task"

    def __init__(self) -> None:
        self.tasks: dict[str, TaskAppTask] = {}

    @property
    def TASKS(self) -> tuple[str, ...]:  # noqa: N802 - the name every task source uses
        return tuple(self.tasks)

    def get_task(self, name: str) -> TaskAppTask:
        return self.tasks[name]

    def task_dir(self, name: str, data_dir: Any = None) -> Path | None:
        return None  # the app holds its data: the examples' ids identify them

    def update(self, apps: Mapping[str, str], token: str | None) -> bool:
        """Add the apps (an app named again with another URL is reconnected there); True if any
        name is new."""
        new = False
        for name, url in apps.items():
            known = self.tasks.get(name)
            if known is not None and known.url == url:
                continue
            if known is not None:
                known.close()
            new = new or known is None
            self.tasks[name] = TaskAppTask(name, url, token=token)
        return new

    def close(self) -> None:
        for task in self.tasks.values():
            task.close()


_SOURCE = TaskAppSource()
atexit.register(_SOURCE.close)  # each app's proxy is a server thread with a port: stop them


def register_task_apps(apps: Mapping[str, str]) -> None:
    """Make each ``name -> url`` task app a task of this process (its bearer token: ``TOKEN_ENV``)."""
    from promptopt.tasks import add_source, refresh_sources

    if _SOURCE.update(apps, os.environ.get(TOKEN_ENV)):
        add_source(_SOURCE)
        refresh_sources()
