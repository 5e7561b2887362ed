"""Under CI a missing LangProBe data mirror stops the test run instead of skipping the data tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from langprobe import task

pytest_plugins = ["pytester"]

CONFTEST = Path(__file__).parent / "conftest.py"


def load_conftest():
    spec = importlib.util.spec_from_file_location("promptopt_tests_conftest", CONFTEST)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def no_mirror(monkeypatch):
    monkeypatch.delenv("PROMPTOPT_DATA_DIR", raising=False)
    monkeypatch.setattr(task, "mirror_dir", lambda explicit=None: None)


@pytest.mark.parametrize("value", ["true", "1", "yes"])
def test_ci_without_mirror_names_where_it_looked(no_mirror, monkeypatch, value):
    monkeypatch.setenv("CI", value)
    message = load_conftest().missing_mirror_message()
    assert message is not None
    assert "PROMPTOPT_DATA_DIR (not set)" in message and "unset CI" in message
    # every folder mirror_dir() searches, the checkout's parent among them
    checkout = Path(task.__file__).resolve().parents[2]
    assert str(checkout / "shared" / "data") in message
    assert str(checkout.parent / "shared" / "data") in message


@pytest.mark.parametrize("value", [None, "", "0", "false"])
def test_outside_ci_the_data_tests_may_skip(no_mirror, monkeypatch, value):
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    assert load_conftest().missing_mirror_message() is None


def test_ci_with_a_mirror_goes_on(monkeypatch, tmp_path):
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("PROMPTOPT_DATA_DIR", str(tmp_path))
    guard = load_conftest()
    assert "holds no MANIFEST.json" in guard.missing_mirror_message()
    (tmp_path / "MANIFEST.json").write_text("{}")
    assert guard.missing_mirror_message() is None


def test_the_session_stops_under_ci(pytester, no_mirror, monkeypatch):
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile("def test_ok():\n    pass\n")
    monkeypatch.setenv("CI", "true")
    stopped = pytester.runpytest()
    assert stopped.ret == pytest.ExitCode.USAGE_ERROR
    stopped.stderr.fnmatch_lines(["*CI is set but no LangProBe data mirror was found*"])
    assert "1 passed" not in stopped.stdout.str()
    monkeypatch.delenv("CI")
    pytester.runpytest().assert_outcomes(passed=1)
