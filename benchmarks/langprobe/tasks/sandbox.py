"""Run untrusted Python in a throwaway interpreter with limits.

Each call starts a fresh ``python -I`` in a temporary directory with a minimal
environment, stdin closed, ``resource`` limits (address space, CPU seconds, no
core files, few open files, small files only) and socket creation disabled
before the code runs; a wall-clock timeout kills the whole process group.
This contains the mistakes of model-written code (infinite loops, memory
bombs, stray network calls); it is not a security boundary against code that
sets out to escape.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_TAIL_CHARS = 1500
# The runner's own traceback frames say nothing about the code under test.
_RUNNER_FRAMES = re.compile(
    r'  File "[^"\n]*runner\.py", line \d+, in <module>\n    runpy\.run_path\(.*\n'
    r'(?:  File "<frozen runpy>".*\n)*'
)

# Runs first in the child: later code that builds a socket gets an OSError.
_RUNNER = """\
import runpy, socket, sys, _socket

def _no_network(*args, **kwargs):
    raise OSError("network access is disabled in the sandbox")

for _mod in (socket, _socket):
    for _name in ("socket", "socketpair", "create_connection", "create_server", "fromfd"):
        if hasattr(_mod, _name):
            setattr(_mod, _name, _no_network)
del _mod, _name
sys.argv = ["solution.py"]
runpy.run_path("solution.py", run_name="__main__")
"""


@dataclass(frozen=True)
class SandboxResult:
    """``status`` is passed, failed, timeout or memory; ``stderr_tail`` the end of stderr."""

    passed: bool
    status: str
    stderr_tail: str


def _limits(timeout_s: float, memory_mb: int) -> Callable[[], None]:
    memory = memory_mb * 1024 * 1024
    cpu = math.ceil(timeout_s) + 1
    setrlimit = resource.setrlimit  # bound here: the child must not import after fork

    def apply() -> None:
        setrlimit(resource.RLIMIT_AS, (memory, memory))
        setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        setrlimit(resource.RLIMIT_CORE, (0, 0))
        setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        setrlimit(resource.RLIMIT_FSIZE, (16 * 1024 * 1024, 16 * 1024 * 1024))

    return apply


def run_python(code: str, timeout_s: float = 10.0, memory_mb: int = 1024) -> SandboxResult:
    """Run ``code`` as ``__main__``; it passes when the interpreter exits with status 0."""
    with tempfile.TemporaryDirectory(prefix="langprobe-sandbox-") as tmp:
        Path(tmp, "solution.py").write_text(code, encoding="utf-8")
        Path(tmp, "runner.py").write_text(_RUNNER, encoding="utf-8")
        env = {"PATH": "/usr/bin:/bin", "HOME": tmp, "TMPDIR": tmp, "LANG": "C.UTF-8"}
        proc = subprocess.Popen(
            [sys.executable, "-I", "runner.py"],
            cwd=tmp,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=_limits(timeout_s, memory_mb),
            start_new_session=True,  # its own process group, so a timeout kills children too
        )
        try:
            _, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.communicate()
            return SandboxResult(False, "timeout", f"timeout: still running after {timeout_s:g} s")
    tail = _RUNNER_FRAMES.sub("", err.decode("utf-8", "replace"))[-_TAIL_CHARS:].strip()
    if proc.returncode == 0:
        return SandboxResult(True, "passed", tail)
    if proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        return SandboxResult(False, "timeout", tail or f"timeout: CPU limit of {math.ceil(timeout_s)} s hit")
    if "MemoryError" in tail:
        return SandboxResult(False, "memory", tail)
    return SandboxResult(False, "failed", tail or f"exit status {proc.returncode}")


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):  # it may have exited just now
        os.killpg(proc.pid, signal.SIGKILL)
