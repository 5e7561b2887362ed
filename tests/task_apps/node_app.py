"""Start the Node.js example task app for a test and stop it afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from langprobe.task import mirror_dir
from promptopt.task_apps.launch import launched_app

APP = Path(__file__).resolve().parents[2] / "examples" / "task-app-node" / "app.mjs"
TOKEN = "n0de"


@contextlib.contextmanager
def running_node_app() -> Iterator[str]:
    """The app's URL while it runs (on a free port, reading iris from the data mirror)."""
    data = mirror_dir()
    assert data is not None, "the Node.js app reads iris from the data mirror (shared/data)"
    env = {"DATA": str(data / "iris" / "iris.csv"), "TOKEN": TOKEN, "PORT": "0", "PATH": "/usr/bin:/bin"}
    with launched_app(["node", str(APP)], env=env) as url:
        yield url
