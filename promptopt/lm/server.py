"""A llama.cpp server for a local model, shared by threads and processes.

A server is an OpenAI-compatible llama.cpp server on 127.0.0.1: ``llama-server`` or llama-cpp-python's
(:mod:`promptopt.lm.engines`). Its state lives in ``<cache>/servers/<engine>/<model>/``:
``server.json`` (pid, port), a log file, and one lease file per process using it
(:mod:`promptopt.lm.leases`). Any process reuses a healthy server; the server
stops when the last process that leased it exits, unless it was started with ``keep_alive``
(``promptopt lm start``).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, ClassVar

from promptopt.io import file_lock, write_json_atomic
from promptopt.lm.cache import default_cache_dir
from promptopt.lm.engines import (
    ENGINES,
    LLAMA_CPP_PYTHON,
    Engine,
    ServerSettings,
    local_slots,
    resolve_engine,
)
from promptopt.lm.leases import live_leases, pid_alive
from promptopt.lm.model_files import resolve_model_path, sha256_file
from promptopt.lm.models import LocalModel, LocalModelError, get_model


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalServer:
    """One llama.cpp server per local model, shared by threads and processes."""

    _instances: ClassVar[dict[str, LocalServer]] = {}
    _lock = threading.Lock()

    def __init__(
        self, spec: LocalModel, model_path: Path | None = None, engine: Engine | None = None
    ) -> None:
        self.spec = spec
        self._model_path = model_path
        self.engine = engine or resolve_engine()
        self.slots = local_slots(self.engine)  # requests it serves at once
        # Servers with other slots are other servers: their replies are not interchangeable.
        slots = "" if self.slots == 1 else f"-{self.slots}-slots"
        self.dir = default_cache_dir() / "servers" / self.engine.name / f"{spec.name}{slots}"
        self.state_file = self.dir / "server.json"
        self.log_file = self.dir / "server.log"
        self.port: int | None = None
        self.pid: int | None = None
        self.model_sha256 = spec.sha256
        self.context_tokens: int | None = None  # the server's n_ctx
        self._leased = False

    @classmethod
    def for_model(cls, name: str | None = None) -> LocalServer:
        spec = get_model(name)
        engine = resolve_engine()
        # The cache folder and the executable belong to the key: a server started from another
        # cache or binary is another server, never one to hand back from here.
        key = f"{default_cache_dir()}|{engine.executable}|{engine.name}/{spec.name}/{local_slots(engine)}"
        with cls._lock:
            if key not in cls._instances:
                cls._instances[key] = cls(spec, engine=engine)
            return cls._instances[key]

    @property
    def api_base(self) -> str:
        if self.port is None:
            raise LocalModelError("The server is not running; call ensure_running() first.")
        return f"http://127.0.0.1:{self.port}/v1"

    def _read_state(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def healthy(self, port: int | None = None, timeout: float = 2.0) -> bool:
        port = port or self.port
        if not port:
            return False
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{port}{self.engine.health_path}", timeout=timeout
            ) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError, TimeoutError):
            return False

    def _usable(self, port: int) -> bool:
        """A live server that accepts connections is reused even when it is too busy to answer a health
        check quickly: it serves one request at a time, and starting a second copy beside a busy one
        would only halve the speed of both."""
        if self.healthy(port, timeout=5):
            return True
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                return True
        except OSError:
            return False

    def status(self) -> dict[str, Any]:
        state = self._read_state()
        if not state:
            return {"model": self.spec.name, "engine": self.engine.name, "running": False}
        alive = pid_alive(state["pid"])
        return {
            "model": self.spec.name,
            "running": alive and self.healthy(state["port"]),
            **state,
            "leases": self._live_leases(),
        }

    def ensure_running(self, *, keep_alive: bool = False, startup_timeout: float = 180.0) -> LocalServer:
        """Reuse a healthy server or start one; take a lease so it outlives nobody who needs it."""
        with file_lock(self.dir / "lock"):
            state = self._read_state()
            if state and pid_alive(state["pid"]) and self._usable(state["port"]):
                self.port, self.pid = state["port"], state["pid"]
                self.model_sha256 = state.get("sha256", self.spec.sha256)
                self.context_tokens = state.get("n_ctx")
                self.slots = state.get("slots", 1)
                if keep_alive and not state.get("keep_alive"):
                    state["keep_alive"] = True
                    self._write_state(state)
            else:
                self._start(keep_alive, startup_timeout)
            self._take_lease()
        return self

    def _write_state(self, state: dict[str, Any]) -> None:
        write_json_atomic(self.state_file, state)

    def _start(self, keep_alive: bool, startup_timeout: float) -> None:
        path = self._model_path or resolve_model_path(self.spec.name)
        self.dir.mkdir(parents=True, exist_ok=True)
        port = _free_port()
        n_ctx = int(os.environ.get("PROMPTOPT_LOCAL_CTX", "8192"))
        cmd = self.engine.command(
            ServerSettings(
                model_path=path,
                alias=self.spec.name,
                port=port,
                context_tokens=n_ctx,
                threads=int(os.environ.get("PROMPTOPT_LOCAL_THREADS", os.cpu_count() or 2)),
                slots=self.slots,
            )
        )
        log = open(self.log_file, "ab")  # noqa: SIM115 - handed to the child
        log.write(f"\n=== {time.ctime()} {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + startup_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise LocalModelError(
                    f"The {self.engine.name} server exited with code {proc.returncode} while starting; "
                    f"last lines of {self.log_file}:\n{self._log_tail()}"
                )
            if self.healthy(port, timeout=1):
                break
            time.sleep(0.25)
        else:
            proc.kill()
            raise LocalModelError(
                f"The {self.engine.name} server did not answer within {startup_timeout:.0f}s; "
                f"see {self.log_file}"
            )
        self.port, self.pid, self.context_tokens = port, proc.pid, n_ctx
        pinned = path.name == f"{self.spec.name}.gguf"  # the joined, verified file
        self.model_sha256 = self.spec.sha256 if pinned else sha256_file(path)
        self._write_state(
            {
                "pid": proc.pid,
                "port": port,
                "model_path": str(path),
                "sha256": self.model_sha256,
                "n_ctx": n_ctx,
                "engine": self.engine.name,
                "slots": self.slots,
                "command": cmd,
                "started": time.time(),
                "keep_alive": keep_alive,
                "log": str(self.log_file),
            }
        )
        if not keep_alive:
            self._start_watchdog(proc.pid)

    def _start_watchdog(self, pid: int) -> None:
        """Stop this server if every leaseholder dies without releasing it (see promptopt.lm.watchdog)."""
        grace = os.environ.get("PROMPTOPT_SERVER_GRACE", "30")
        with open(self.dir / "watchdog.log", "ab") as log:
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "promptopt.lm.watchdog",
                    "--server-dir",
                    str(self.dir),
                    "--pid",
                    str(pid),
                    "--grace",
                    grace,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def _log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    # Leases: one file per process; the last process out stops an auto-started server.
    def _lease_dir(self) -> Path:
        return self.dir / "leases"

    def _take_lease(self) -> None:
        if self._leased:
            return
        self._lease_dir().mkdir(parents=True, exist_ok=True)
        (self._lease_dir() / str(os.getpid())).touch()
        self._leased = True
        atexit.register(self.release)

    def _live_leases(self) -> list[int]:
        return live_leases(self._lease_dir(), prune=True)

    def release(self) -> None:
        """Drop this process's lease; stop the server if nobody else holds one."""
        if not self._leased:
            return
        self._leased = False
        with file_lock(self.dir / "lock"):
            (self._lease_dir() / str(os.getpid())).unlink(missing_ok=True)
            state = self._read_state()
            if state and not state.get("keep_alive") and not self._live_leases():
                self._stop_pid(state["pid"])
                self.state_file.unlink(missing_ok=True)

    def stop(self) -> bool:
        """Stop the server whoever started it. Returns whether one was running."""
        with file_lock(self.dir / "lock"):
            state = self._read_state()
            self.state_file.unlink(missing_ok=True)
            self.port = self.pid = None
            if not state:
                return False
            return self._stop_pid(state["pid"])

    @staticmethod
    def _stop_pid(pid: int) -> bool:
        if not pid_alive(pid):
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            if not pid_alive(pid):
                break
            time.sleep(0.1)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        return True


def servers_of(name: str | None = None) -> list[LocalServer]:
    """A handle on every server of this model that left its state here, whatever engine or slots
    started it (and where servers were kept before the engine was a choice), for status and stop."""
    spec = get_model(name)
    root = default_cache_dir() / "servers"
    folders = [
        *sorted(root.glob(f"*/{spec.name}")),
        *sorted(root.glob(f"*/{spec.name}-*-slots")),
        root / spec.name,
    ]
    found = []
    for folder in folders:
        if not (folder / "server.json").is_file():
            continue
        engine = (
            folder.parent.name
            if folder.parent != root and folder.parent.name in ENGINES
            else LLAMA_CPP_PYTHON
        )
        server = LocalServer(spec, engine=Engine(engine, ""))  # only its state is read
        server.dir, server.state_file, server.log_file = folder, folder / "server.json", folder / "server.log"
        found.append(server)
    return found
