"""Start a task app as a child process and stop it afterwards.

An app that promptopt may start prints one JSON line ``{"url": "http://127.0.0.1:PORT"}`` on its
standard output once it listens (the Node.js example does; ``serve()`` apps can print the same).
Everything else the app writes goes to a log file, so a chatty app cannot fill a pipe and stall.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path


class AppLaunchError(RuntimeError):
    """The app exited or stayed silent before it printed its URL; the message holds its log."""


@contextlib.contextmanager
def launched_app(
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    startup_timeout: float = 30.0,
) -> Iterator[str]:
    """The URL of ``command`` while it runs; it is terminated (then killed) on exit."""
    log = tempfile.NamedTemporaryFile(prefix="task-app-", suffix=".log", delete=False)  # noqa: SIM115
    try:
        # A session of its own: a wrapper (npm start, sh -c) and the server it starts stop together.
        proc = subprocess.Popen(
            list(command),
            env=None if env is None else dict(env),
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            start_new_session=True,
        )
    except OSError as exc:
        log.close()
        Path(log.name).unlink(missing_ok=True)
        raise AppLaunchError(f"Cannot start the task app {list(command)}: {exc}.") from exc
    try:
        url = _first_url(proc, startup_timeout, Path(log.name), command)
        yield url
    finally:
        _stop_group(proc)
        log.close()
        Path(log.name).unlink(missing_ok=True)


def _stop_group(proc: subprocess.Popen[str]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            continue


def _first_url(proc: subprocess.Popen[str], timeout: float, log: Path, command: Sequence[str]) -> str:
    line: list[str] = []
    # readline() blocks; a thread lets a silent app time out instead of hanging the run.
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline() if proc.stdout else ""))
    reader.daemon = True
    reader.start()
    reader.join(timeout)
    text = line[0] if line else ""
    if not text:
        if reader.is_alive():
            state = f"printed nothing in {timeout:g} s"
        else:  # its stdout closed: it is exiting, so wait for its status
            try:
                state = f"exited with status {proc.wait(timeout=5)}"
            except subprocess.TimeoutExpired:
                state = "closed its standard output"
        raise AppLaunchError(
            f"The task app {list(command)} {state} before printing its URL. Its log:\n"
            f"{log.read_text(errors='replace')[-2000:]}"
        )
    try:
        url = json.loads(text)["url"]
    except (ValueError, KeyError, TypeError) as exc:
        raise AppLaunchError(
            f"The task app {list(command)} printed {text.strip()[:200]!r}; its first line must be "
            f'{{"url": "http://127.0.0.1:PORT"}}.'
        ) from exc
    threading.Thread(target=_drain, args=(proc,), daemon=True).start()
    return str(url)


def _drain(proc: subprocess.Popen[str]) -> None:
    """Read and drop the rest of stdout, line by line, so the app never blocks on a full pipe."""
    if proc.stdout is not None:
        for _ in proc.stdout:
            pass
