"""Which program serves a local model: llama.cpp's own ``llama-server`` or llama-cpp-python's.

Both serve the same GGUF file over the same OpenAI-compatible API from the same llama.cpp source
(the one vendored in the llama-cpp-python release promptopt pins). ``llama-server`` is the default
where its binary exists (``promptopt lm build-server`` or ``scripts/setup.sh`` builds it): on two
cores it answered short classification prompts and long replies faster and stayed far smaller in
memory (results/local-server/). llama-cpp-python's server is the fallback, and
``PROMPTOPT_LOCAL_SERVER=llama-cpp-python`` chooses it. The engine is part of a local LM's identity,
so numbers measured through one are never reused as numbers of the other.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from promptopt.lm.models import LocalModelError

LLAMA_SERVER = "llama-server"
LLAMA_CPP_PYTHON = "llama-cpp-python"
ENGINES = (LLAMA_SERVER, LLAMA_CPP_PYTHON)
ENGINE_ENV = "PROMPTOPT_LOCAL_SERVER"
BINARY_ENV = "PROMPTOPT_LLAMA_SERVER_BIN"
SLOTS_ENV = "PROMPTOPT_LOCAL_SLOTS"


@dataclass(frozen=True)
class ServerSettings:
    """How one local server is started."""

    model_path: Path
    alias: str
    port: int
    context_tokens: int  # per request
    threads: int
    slots: int = 1  # requests served at once (llama-server only)


@dataclass(frozen=True)
class Engine:
    """A program that serves a GGUF model: its name and how to start it."""

    name: str
    executable: str  # the binary, or the Python interpreter for llama-cpp-python

    def command(self, s: ServerSettings) -> list[str]:
        if self.name == LLAMA_SERVER:
            return [
                self.executable,
                "--model", str(s.model_path),
                "--alias", s.alias,
                "--host", "127.0.0.1",
                "--port", str(s.port),
                # Each slot gets the whole context window of one request.
                "--ctx-size", str(s.context_tokens * s.slots),
                "--parallel", str(s.slots),
                "--no-kv-unified",
                "--threads", str(s.threads),
                "--threads-batch", str(s.threads),
                "--no-webui",
                # Warnings and errors only: a log line per request would grow without end.
                "--log-verbosity", "2",
                # The host-memory prompt cache (8 GiB by default) bounded to what a small model needs.
                "--cache-ram", "1024",
            ]  # fmt: skip
        return [
            self.executable,
            "-m", "llama_cpp.server",
            "--model", str(s.model_path),
            "--model_alias", s.alias,
            "--host", "127.0.0.1",
            "--port", str(s.port),
            "--n_ctx", str(s.context_tokens),
            "--n_threads", str(s.threads),
            "--n_threads_batch", str(s.threads),
            "--verbose", "False",
        ]  # fmt: skip

    @property
    def health_path(self) -> str:
        # llama-server answers /v1/models while the model is still loading; /health only when ready.
        return "/health" if self.name == LLAMA_SERVER else "/v1/models"

    def identity(self) -> dict[str, str]:
        """What served the replies, for a local LM's identity: the engine and the llama.cpp source
        it was built from (llama-cpp-python's release; a binary named by path: its sha256)."""
        return {"server": self.name, "server_build": _build_of(self)}


@functools.cache
def _build_of(engine: Engine) -> str:
    if engine.name == LLAMA_CPP_PYTHON:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return f"llama-cpp-python {version('llama_cpp_python')}"
        except PackageNotFoundError:
            return "llama-cpp-python (version unknown)"
    path = Path(engine.executable)
    try:
        record = json.loads((path.parent / f"{LLAMA_SERVER}.json").read_text())
        return f"llama-cpp-python {record['llama_cpp_python']} source"
    except (OSError, ValueError, KeyError):
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return f"binary sha256 {h.hexdigest()}"


def local_slots(engine: Engine) -> int:
    """How many requests the local server serves at once: ``$PROMPTOPT_LOCAL_SLOTS`` for
    llama-server, default 1. One slot serves requests one after another, so a reply never depends
    on which other requests shared its batch and numbers stay reproducible run to run; more slots
    batch concurrent requests (results/local-server/ measures both). llama-cpp-python's server
    serves one request at a time."""
    if engine.name != LLAMA_SERVER:
        return 1
    raw = os.environ.get(SLOTS_ENV, "1")
    try:
        slots = int(raw)
    except ValueError:
        slots = 0
    if slots < 1:
        raise LocalModelError(f"{SLOTS_ENV}={raw!r} must be a whole number of at least 1.")
    return slots


def binary_dir() -> Path:
    """Where ``promptopt lm build-server`` puts the ``llama-server`` binary."""
    from promptopt.lm.cache import default_cache_dir

    return default_cache_dir() / "bin"


def find_llama_server() -> Path | None:
    """The ``llama-server`` binary: ``$PROMPTOPT_LLAMA_SERVER_BIN``, else the one promptopt built."""
    named = os.environ.get(BINARY_ENV)
    if named:
        path = Path(named)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise LocalModelError(f"{BINARY_ENV}={named} is not an executable file.")
        return path
    built = binary_dir() / LLAMA_SERVER
    return built if built.is_file() and os.access(built, os.X_OK) else None


def _llama_cpp_python_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def resolve_engine(name: str | None = None) -> Engine:
    """The engine named (or ``$PROMPTOPT_LOCAL_SERVER``), else ``llama-server`` when its binary
    exists, else llama-cpp-python's server. A named engine that is missing is an error, never a
    silent switch to the other one."""
    name = name or os.environ.get(ENGINE_ENV) or None
    if name is not None and name not in ENGINES:
        raise LocalModelError(
            f"{ENGINE_ENV}={name!r} names no local server; choose one of {', '.join(ENGINES)}."
        )
    if name in (None, LLAMA_SERVER):
        binary = find_llama_server()
        if binary is not None:
            return Engine(LLAMA_SERVER, str(binary))
        if name == LLAMA_SERVER:
            raise LocalModelError(
                "llama-server is not built here; run `promptopt lm build-server` (about 4 minutes "
                f"on 2 cores), set {BINARY_ENV} to a llama-server binary, or set "
                f"{ENGINE_ENV}={LLAMA_CPP_PYTHON}."
            )
    if not _llama_cpp_python_installed():
        if name == LLAMA_CPP_PYTHON:
            raise LocalModelError(
                f"{ENGINE_ENV}={LLAMA_CPP_PYTHON} but llama-cpp-python is not installed: "
                "pip install 'promptopt[local]', or unset it to use llama-server."
            )
        raise LocalModelError(
            "No local server is installed: run `promptopt lm build-server` for llama.cpp's llama-server, "
            "or pip install 'promptopt[local]' for llama-cpp-python's."
        )
    return Engine(LLAMA_CPP_PYTHON, sys.executable)
