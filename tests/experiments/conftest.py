"""Loading the scripts of experiments/gepa_dev, which are files to run rather than a package."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

DEV_SCRIPTS = Path(__file__).resolve().parents[2] / "experiments" / "gepa_dev"


@pytest.fixture(scope="session")
def dev_script() -> Callable[[str], ModuleType]:
    """``dev_script("holdout.py")``: that script as a module (the scripts import each other, so their
    folder is on the path while one loads)."""

    def load(filename: str) -> ModuleType:
        sys.path.insert(0, str(DEV_SCRIPTS))
        try:
            spec = importlib.util.spec_from_file_location(
                f"gepa_dev_{Path(filename).stem}", DEV_SCRIPTS / filename
            )
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        finally:
            sys.path.remove(str(DEV_SCRIPTS))
        return module

    return load
