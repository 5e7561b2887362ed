"""Shared fixtures: an isolated cache directory for every test session."""

from __future__ import annotations

import os
import tempfile

import pytest

# Tests must never write into the user's cache, and unit tests never need the network.
os.environ.setdefault("PROMPTOPT_CACHE_DIR", tempfile.mkdtemp(prefix="promptopt-test-cache-"))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


@pytest.fixture
def tmp_cache(tmp_path):
    from promptopt.lm.cache import Cache

    return Cache(tmp_path / "cache.sqlite")
