"""The package's import contracts (``[tool.importlinter]`` in pyproject.toml) hold, and break when a
module imports across them: a lower layer importing a higher one, a sibling cycle, or promptopt
importing a task package instead of finding it by name."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).parent / "lint-imports"

pytestmark = pytest.mark.skipif(
    not LINT.exists(), reason="import-linter is not installed (pip install -e .[dev])"
)


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(root / "benchmarks")])}
    return subprocess.run(
        [str(LINT), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_contracts_hold():
    out = lint(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "5 kept, 0 broken" in out.stdout


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the package and the task package, to break."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    shutil.copytree(ROOT / "promptopt", tmp_path / "promptopt", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(
        ROOT / "benchmarks" / "langprobe",
        tmp_path / "benchmarks" / "langprobe",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return tmp_path


def add_import(path: Path, statement: str) -> None:
    # Inside a function, where an import hides best from a reader (and not from the linter).
    with open(path, "a") as fh:
        fh.write(f"\n\ndef _added() -> None:\n    {statement}  # noqa\n")


@pytest.mark.parametrize(
    ("module", "statement", "reported"),
    [
        (
            "core/program.py",
            "from promptopt.lm.client import LM",
            "promptopt.core is not allowed to import promptopt.lm",
        ),
        (
            "lm/client.py",
            "from promptopt.core.program import Program",
            "promptopt.lm is not allowed to import promptopt.core",
        ),
        (
            "optimizers/result.py",
            "from promptopt.bench import store",
            "promptopt.optimizers is not allowed to import promptopt.bench",
        ),
        ("bench/runner.py", "from promptopt.bench import matrix", "No cycles are allowed in promptopt.bench"),
        ("train/cli.py", "from langprobe import get_task", "promptopt.train.cli -> langprobe"),
    ],
)
def test_a_crossing_import_breaks_a_contract(tree, module, statement, reported):
    add_import(tree / "promptopt" / module, statement)
    out = lint(tree)
    assert out.returncode != 0
    assert reported in out.stdout, out.stdout
