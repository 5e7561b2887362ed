"""Shared fixtures: an isolated cache directory for every test session; under CI, a check that the
LangProBe data mirror is there (without it the data-backed tests would skip and CI would pass)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Tests must never write into the user's cache, and unit tests never need the network. The joined
# model files and the llama-server build are the exception: they are read, never changed, and
# joining 1.6 GB or compiling again in every test session costs minutes, so the tests use the user's.
if "PROMPTOPT_CACHE_DIR" not in os.environ:
    from promptopt.lm.engines import BINARY_ENV, find_llama_server
    from promptopt.lm.model_files import models_dir

    os.environ.setdefault("PROMPTOPT_MODELS_DIR", str(models_dir()))
    if (built := find_llama_server()) is not None:
        os.environ.setdefault(BINARY_ENV, str(built))
    os.environ["PROMPTOPT_CACHE_DIR"] = tempfile.mkdtemp(prefix="promptopt-test-cache-")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def in_ci() -> bool:
    """``$CI`` is set to anything but an empty string, ``0``, ``false`` or ``no`` (CI sets ``CI=true``)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing_mirror_message() -> str | None:
    """Under CI, why the data mirror the tests under tests/langprobe and tests/bench need is missing
    (the message to stop the run with); None when it is there, or outside CI, where those tests skip."""
    if not in_ci():
        return None
    from langprobe import task

    mirror = task.mirror_dir()
    if mirror is not None and (mirror / "MANIFEST.json").is_file():
        return None
    fix = (
        "Put the mirror (the folder holding MANIFEST.json) at shared/data beside the checkout or set "
        "PROMPTOPT_DATA_DIR to it; to run without it (the data tests then skip), unset CI."
    )
    if mirror is not None:
        return f"CI is set but PROMPTOPT_DATA_DIR={mirror} holds no MANIFEST.json: not a data mirror. {fix}"
    looked = [str(p / "shared" / "data") for p in Path(task.__file__).resolve().parents]
    return (
        "CI is set but no LangProBe data mirror was found, so the tests under tests/langprobe and "
        "tests/bench that need it would be skipped. Looked at $PROMPTOPT_DATA_DIR (not set) and for "
        f"shared/data/MANIFEST.json in {', '.join(looked)}. {fix}"
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    problem = missing_mirror_message()
    if problem:
        pytest.exit(problem, returncode=pytest.ExitCode.USAGE_ERROR)


@pytest.fixture
def tmp_cache(tmp_path):
    from promptopt.lm.cache import Cache

    return Cache(tmp_path / "cache.sqlite")


@pytest.fixture
def memory_path(tmp_path):
    """A fresh folder in memory (/dev/shm) where the machine has one with room, else ``tmp_path``:
    for runs that commit to a SQLite study hundreds of times, which on a disk costs seconds a run."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and shutil.disk_usage(shm).free > 1 << 28):
        yield tmp_path
        return
    path = Path(tempfile.mkdtemp(prefix="promptopt-test-", dir=shm))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
