"""Starting a task app as a child process: its URL line, and clear errors when it has none."""

from __future__ import annotations

import sys

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
