"""Start the Node.js example task app for a test and stop it afterwards."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

from langprobe.task import mirror_dir

APP = Path(__file__).resolve().parents[2] / "examples" / "task-app-node" / "app.mjs"
TOKEN = "n0de"


@contextlib.contextmanager
def running_node_app() -> Iterator[str]:
    """The app's URL while it runs (on a free port, reading iris from the data mirror)."""
    data = mirror_dir()
    assert data is not None, "the Node.js app reads iris from the data mirror (shared/data)"
    env = {"DATA": str(data / "iris" / "iris.csv"), "TOKEN": TOKEN, "PORT": "0", "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen(
        ["node", str(APP)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line:
            raise RuntimeError(f"The Node.js app did not start: {proc.stderr.read() if proc.stderr else ''}")
        yield json.loads(line)["url"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
