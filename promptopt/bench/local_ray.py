"""A throwaway Ray cluster on this machine, for trying ``--executor ray`` without one: a head node
and a worker node, each its own set of processes started with ``ray start`` on 127.0.0.1 and offering
one CPU, stopped (only they: any other Ray on the machine is left alone) when the block ends. The
worker node can be killed, to see a lost node's cells run again elsewhere."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

RAY = Path(sys.executable).parent / "ray"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RayCluster:
    address: str
    worker_node_port: int  # the worker node's raylet listens here; it names that node's processes

    def kill_worker_node(self) -> int:
        """SIGKILL the worker node's raylet and every process under it; returns how many died."""
        killed = 0
        for pid in _pids_with(f"--node_manager_port={self.worker_node_port}"):
            for member in [*_descendants(pid), pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(member, signal.SIGKILL)
                    killed += 1
        return killed


def _pids_with(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
    return found


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


@contextlib.contextmanager
def local_ray_cluster(env: Mapping[str, str]) -> Iterator[RayCluster]:
    """A head and a worker node whose processes see ``env``; stopped (``ray stop``) afterwards."""
    if not RAY.exists():
        raise RuntimeError("Ray is not installed in this environment (pip install 'promptopt[ray]')")
    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # Ray's socket paths must stay short
    port, worker_port = _free_port(), _free_port()
    run_env = {**os.environ, **env, "RAY_USAGE_STATS_ENABLED": "0"}
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"]
    try:
        subprocess.run(
            [
                str(RAY),
                "start",
                "--head",
                f"--port={port}",
                "--include-dashboard=false",
                f"--temp-dir={temp}",
                *common,
            ],
            env=run_env,
            check=True,
            capture_output=True,
            text=True,
        )
        subprocess.run(
            [str(RAY), "start", f"--address=127.0.0.1:{port}", f"--node-manager-port={worker_port}", *common],
            env=run_env,
            check=True,
            capture_output=True,
            text=True,
        )
        yield RayCluster(f"127.0.0.1:{port}", worker_port)
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"ray start failed: {exc.stderr[-3000:]}") from exc
    finally:
        # Only this cluster's processes (their command lines name its temp folder, and the agents
        # are their children): `ray stop` would also stop any other Ray on the machine.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in _pids_with(str(temp)):
                for member in [*_descendants(pid), pid]:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(member, sig)
            deadline = time.time() + 10
            while _pids_with(str(temp)) and time.time() < deadline:
                time.sleep(0.2)
        shutil.rmtree(temp, ignore_errors=True)
