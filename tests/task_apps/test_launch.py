"""Starting a task app as a child process: its URL line, and clear errors when it has none."""

from __future__ import annotations

import sys

import pytest

from promptopt.task_apps.launch import AppLaunchError, launched_app


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_the_url_line_is_read_and_the_app_is_stopped_on_exit():
    code = "import json,sys,time; print(json.dumps({'url': 'http://127.0.0.1:9'}), flush=True); time.sleep(60)"
    with launched_app(_python(code)) as url:
        assert url == "http://127.0.0.1:9"


def test_an_app_that_exits_first_names_its_status_and_log():
    with pytest.raises(AppLaunchError, match=r"(?s)exited with status 3.*no data file"):
        with launched_app(_python("import sys; sys.stderr.write('no data file'); sys.exit(3)")):
            pass


def test_a_silent_app_times_out():
    with pytest.raises(AppLaunchError, match="printed nothing in 0.5 s"):
        with launched_app(_python("import time; time.sleep(30)"), startup_timeout=0.5):
            pass


def test_a_first_line_that_is_not_the_url_is_named():
    with pytest.raises(AppLaunchError, match="'listening on 8080'"):
        with launched_app(_python("print('listening on 8080', flush=True)")):
            pass


def test_a_missing_program_is_a_launch_error():
    with pytest.raises(AppLaunchError, match="Cannot start"):
        with launched_app(["/nonexistent/task-app"]):
            pass
