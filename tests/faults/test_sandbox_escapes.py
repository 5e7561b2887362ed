"""Escapes that model-written code has tried from HumanEval's sandbox, each now contained: reading
host files, writing outside its directory, the network by four routes, a fork bomb, killing its
parent, a setsid grandchild holding stderr, detached grandchildren, early exits scored as passes.
Also the refusal to run unconfined without bwrap, and the weak mode one can opt into.

Outside CI these skip only when bwrap is not installed; under CI a missing bwrap fails them.
Listeners bind 127.0.0.1; every loop and wait is bounded."""

from __future__ import annotations

import contextlib
import os
import secrets
import select
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from langprobe.tasks import sandbox
from langprobe.tasks.sandbox import SandboxUnavailableError, run_python


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


needs_bwrap = pytest.mark.skipif(
    shutil.which("bwrap") is None and not _in_ci(),
    reason="bwrap not installed (apt-get install bubblewrap); under CI this fails instead",
)


@pytest.fixture(autouse=True)
def _default_isolation(monkeypatch):
    monkeypatch.delenv(sandbox.ISOLATION_ENV, raising=False)


def _marker() -> str:
    return "sandbox-probe-" + secrets.token_hex(6)


def _procs(marker: str) -> list[int]:
    """Host pids whose command line holds ``marker``."""
    found = []
    needle = marker.encode()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if needle in Path("/proc", entry, "cmdline").read_bytes():
                    found.append(int(entry))
    return found


def _still_there(marker: str, within_s: float = 2.0) -> list[int]:
    deadline = time.monotonic() + within_s
    while (left := _procs(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def _kill_all(marker: str) -> None:
    for pid in _procs(marker):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def _watch(marker: str) -> Iterator[set[int]]:
    """Collects the host pids carrying ``marker`` while the block runs (proof a probe's processes
    existed); kills any left behind afterwards so a failing test leaves nothing running."""
    seen: set[int] = set()
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(0.02):
            seen.update(_procs(marker))

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join(timeout=5)
        _kill_all(marker)


@pytest.fixture
def listener() -> Iterator[tuple[int, Callable[..., bool]]]:
    """A TCP listener on 127.0.0.1; ``connected()`` says whether anything reached it."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)

    def connected(wait_s: float = 0.5) -> bool:
        readable, _, _ = select.select([srv], [], [], wait_s)
        return bool(readable)

    try:
        yield srv.getsockname()[1], connected
    finally:
        srv.close()


# Host files ---------------------------------------------------------------------------------------
@needs_bwrap
def test_host_files_are_not_readable_and_nothing_leaks_into_the_result():
    secret = "planted-" + secrets.token_hex(8)
    planted = Path.home() / f".promptopt-sandbox-probe-{secrets.token_hex(4)}"
    planted.write_text(secret)
    passwd_line = Path("/etc/passwd").read_text().splitlines()[0]
    try:
        code = (
            "import sys\n"
            "found = []\n"
            f"for path in ['/etc/passwd', {str(planted)!r}]:\n"
            "    try:\n"
            "        found.append(open(path).read())\n"
            "    except OSError as exc:\n"
            "        found.append(repr(exc))\n"
            "print('\\n'.join(found))\n"
            "raise SystemExit('\\n'.join(found))\n"
        )
        result = run_python(code)
        assert not result.passed
        assert secret not in result.stderr_tail and passwd_line not in result.stderr_tail
        assert "No such file" in result.stderr_tail  # neither file exists in there
        # What the code prints to stdout never reaches the result, even when it passes.
        printed = run_python(f"print({secret!r})")
        assert printed.passed and secret not in printed.stderr_tail
    finally:
        planted.unlink()


@needs_bwrap
def test_writes_outside_the_sandbox_do_not_reach_the_host(tmp_path):
    in_tmp = Path("/tmp", f"promptopt-sandbox-escape-{secrets.token_hex(4)}")
    in_host_dir = tmp_path / "escaped"
    code = f"open({str(in_tmp)!r}, 'w').write('x')\nopen({str(in_host_dir)!r}, 'w').write('x')\n"
    result = run_python(code)
    assert not result.passed  # the sandbox's own /tmp takes the first; the host folder is not there
    assert not in_tmp.exists() and not in_host_dir.exists()


# Network ------------------------------------------------------------------------------------------
NETWORK_PROBES = {
    "socket_reimport": (
        "import sys\n"
        "for name in ('socket', '_socket'):\n"
        "    sys.modules.pop(name, None)\n"
        "import _socket\n"
        "s = _socket.socket()\n"
        "s.connect(('127.0.0.1', PORT))\n"
    ),
    "ctypes": (
        "import ctypes, struct\n"
        "libc = ctypes.CDLL('libc.so.6', use_errno=True)\n"
        "fd = libc.socket(2, 1, 0)\n"
        "addr = struct.pack('!HH4s8x', 0, PORT, bytes([127, 0, 0, 1]))\n"
        "addr = struct.pack('=H', 2) + addr[2:]\n"
        "assert fd >= 0 and libc.connect(fd, addr, len(addr)) == 0, ctypes.get_errno()\n"
    ),
    "child_python": (
        "import subprocess, sys\n"
        "child = 'import _socket; _socket.socket().connect((\"127.0.0.1\", PORT))'\n"
        "subprocess.run([sys.executable, '-c', child], check=True, timeout=5)\n"
    ),
    "bash_dev_tcp": (
        "import subprocess\n"
        "subprocess.run(['bash', '-c', 'echo hi > /dev/tcp/127.0.0.1/PORT'], check=True, timeout=5)\n"
    ),
}


@needs_bwrap
@pytest.mark.parametrize("route", list(NETWORK_PROBES))
def test_no_network_connection_by_any_route(route, listener):
    port, connected = listener
    result = run_python(NETWORK_PROBES[route].replace("PORT", str(port)))
    assert not connected(), f"{route} reached the host's listener"
    assert not result.passed, result


# Processes ----------------------------------------------------------------------------------------
@needs_bwrap
def test_fork_bomb_is_bounded_and_leaves_nothing():
    marker = _marker()
    code = (
        "import os\n"
        "n = 0\n"
        "for _ in range(200):\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "    except OSError:\n"
        "        break\n"
        "    if pid == 0:\n"
        f"        os.execv('/bin/sleep', [{marker!r}, '30'])\n"
        "    n += 1\n"
        "assert n == 200, f'only {n} forks'\n"
    )
    start = time.monotonic()
    with _watch(marker) as seen:
        result = run_python(code, timeout_s=10)
        assert time.monotonic() - start < 10  # refused forks, not a timeout
        assert not result.passed and "only" in result.stderr_tail
        assert 0 < len(seen) < 200
        assert _still_there(marker) == []


@needs_bwrap
def test_killing_the_parent_fails_the_run_and_spares_the_caller():
    code = "def add(a, b):\n    return a - b\nimport os\nos.kill(os.getppid(), 9)\nassert add(1, 2) == 3\n"
    result = run_python(code)
    assert not result.passed
    # The caller (this process) is alive to see the verdict; a second run still works.
    assert run_python("assert 1 + 1 == 2").passed


IMMORTAL = (
    "import signal, time\n"
    "for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):\n"
    "    signal.signal(s, signal.SIG_IGN)\n"
    "while True:\n"
    "    time.sleep(1)\n"
)


@needs_bwrap
def test_setsid_grandchild_holding_stderr_cannot_stretch_the_timeout():
    marker = _marker()
    code = (
        "import subprocess, sys, time\n"
        f"subprocess.Popen(['setsid', sys.executable, '-c', {IMMORTAL!r}, {marker!r}])\n"
        "time.sleep(60)\n"
    )
    with _watch(marker) as seen:
        start = time.monotonic()
        result = run_python(code, timeout_s=3)
        elapsed = time.monotonic() - start
        assert result.status == "timeout" and not result.passed
        assert elapsed < 6, f"took {elapsed:.1f} s"
        assert seen, "the grandchild never started, so this proved nothing"
        assert _still_there(marker) == []


@needs_bwrap
def test_detached_grandchild_does_not_outlive_the_run():
    marker = _marker()
    code = (
        "import os, sys, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        f"        os.execv(sys.executable, [sys.executable, '-c', {IMMORTAL!r}, {marker!r}])\n"
        "    os._exit(0)\n"
        "os.wait()\n"
        "time.sleep(0.5)\n"
    )
    with _watch(marker) as seen:
        result = run_python(code)
        assert result.passed  # the code itself is fine; its leftover is not
        assert seen, "the grandchild never started, so this proved nothing"
        assert _still_there(marker) == []


# The verdict --------------------------------------------------------------------------------------
WRONG = "def add(a, b):\n    return a - b\n\n"
CHECK = "assert add(1, 2) == 3, 'add is wrong'\n"


@needs_bwrap
@pytest.mark.parametrize(
    "exit_call", ["import os; os._exit(0)", "import sys; sys.exit(0)", "raise SystemExit()"]
)
def test_exiting_before_the_checks_is_a_failure(exit_call):
    result = run_python(WRONG + exit_call + "\n" + CHECK)
    assert not result.passed and result.status == "failed"


@needs_bwrap
def test_correct_solution_passes_and_wrong_one_fails():
    assert run_python(WRONG.replace("a - b", "a + b") + CHECK).passed
    wrong = run_python(WRONG + CHECK)
    assert not wrong.passed and "add is wrong" in wrong.stderr_tail
    assert "/sandbox" not in wrong.stderr_tail and "runner.py" not in wrong.stderr_tail


# Without namespaces -------------------------------------------------------------------------------
def test_refuses_to_run_unconfined_without_bwrap(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap to be found
    with pytest.raises(SandboxUnavailableError) as info:
        run_python("print('hi')")
    message = str(info.value)
    assert "bwrap" in message and "apt-get install bubblewrap" in message
    assert "isolation='weak'" in message and f"{sandbox.ISOLATION_ENV}=weak" in message


def test_refuses_when_bwrap_cannot_create_namespaces(monkeypatch, tmp_path):
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to creating new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    with pytest.raises(SandboxUnavailableError, match="No permissions to creating new namespace"):
        run_python("print('hi')")


def test_weak_mode_is_an_explicit_opt_in(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert run_python(WRONG.replace("a - b", "a + b") + CHECK, isolation="weak").passed
    assert not run_python(WRONG + "import os; os._exit(0)\n" + CHECK, isolation="weak").passed
    monkeypatch.setenv(sandbox.ISOLATION_ENV, "weak")
    assert run_python(WRONG.replace("a - b", "a + b") + CHECK).passed
    with pytest.raises(ValueError, match="isolation"):
        run_python("pass", isolation="none")


def test_weak_mode_waits_are_bounded():
    """Weak mode cannot kill a setsid grandchild, but it no longer waits for it either."""
    marker = _marker()
    code = (
        "import subprocess, sys, time\n"
        f"subprocess.Popen(['setsid', sys.executable, '-c', {IMMORTAL!r}, {marker!r}])\n"
        "time.sleep(60)\n"
    )
    with _watch(marker):
        start = time.monotonic()
        result = run_python(code, timeout_s=3, isolation="weak")
        assert result.status == "timeout" and time.monotonic() - start < 6
