"""Tests against the real local model (llama.cpp server).

They run by default: CI installs the model with scripts/setup.sh. Set
PROMPTOPT_SKIP_REAL_LM=1 to skip them on a machine without the local model.
"""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "real_lm" in str(item.fspath):
            item.add_marker(pytest.mark.real_lm)
            if os.environ.get("PROMPTOPT_SKIP_REAL_LM") == "1":
                item.add_marker(pytest.mark.skip(reason="PROMPTOPT_SKIP_REAL_LM=1"))


@pytest.fixture(scope="session")
def local_lm_factory():
    import promptopt as po

    def make(cache_path, **kwargs):
        return po.LM("local", cache=cache_path, **kwargs)

    return make
