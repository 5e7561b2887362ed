"""Starting a task app as a child process: its URL line, and clear errors when it has none."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from promptopt.task_apps.launch import AppLaunchError, launched_app


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def _launch_error(command: list[str], **options: float) -> str:
    with pytest.raises(AppLaunchError) as caught, launched_app(command, **options):
        pass
    return str(caught.value)


def test_the_url_line_is_read_and_the_app_is_stopped_on_exit():
    code = "import json, time; print(json.dumps({'url': 'http://127.0.0.1:9'}), flush=True); time.sleep(60)"
    with launched_app(_python(code)) as url:
        assert url == "http://127.0.0.1:9"


def test_an_app_that_exits_first_names_its_status_and_log():
    error = _launch_error(_python("import sys; sys.stderr.write('no data file'); sys.exit(3)"))
    assert "exited with status 3" in error and error.endswith("no data file")


def test_a_silent_app_times_out():
    error = _launch_error(_python("import time; time.sleep(30)"), startup_timeout=0.5)
    assert "printed nothing in 0.5 s" in error


def test_a_first_line_that_is_not_the_url_is_named():
    error = _launch_error(_python("print('listening on 8080', flush=True)"))
    assert "'listening on 8080'" in error and '{"url": "http://127.0.0.1:PORT"}' in error


def test_a_missing_program_is_a_launch_error():
    assert "Cannot start" in _launch_error(["/nonexistent/task-app"])


def test_what_the_app_started_stops_with_it(tmp_path):
    import os
    import time

    pid_file = tmp_path / "server.pid"
    # A wrapper that starts the real server as a child of its own, like `npm start` or `sh -c`.
    code = (
        "import json, subprocess, sys, time; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open({str(pid_file)!r}, 'w').write(str(p.pid)); "
        "print(json.dumps({'url': 'http://127.0.0.1:9'}), flush=True); time.sleep(60)"
    )
    with launched_app(_python(code)):
        server = int(pid_file.read_text())
        os.kill(server, 0)  # running
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.kill(server, 0)
        except ProcessLookupError:
            return
        # a zombie until reaped by init counts as gone once its state says so
        if Path(f"/proc/{server}/stat").read_text().split(")")[1].split()[0] == "Z":
            return
        time.sleep(0.1)
    raise AssertionError("the server the wrapper started outlived the app")
