"""Both local servers for real: llama.cpp's llama-server (the default once built) and
llama-cpp-python's (the fallback) serve the same model file, and their replies are cached apart."""

from __future__ import annotations

from pathlib import Path

import pytest

import promptopt as po
from promptopt.lm import engines
from promptopt.lm.server import LocalServer
from tests.conftest import in_ci

if engines.find_llama_server() is None and in_ci():
    pytest.fail(
        "CI is set but llama-server is not built: scripts/setup.sh builds it (promptopt lm build-server).",
        pytrace=False,
    )
pytestmark = pytest.mark.skipif(
    engines.find_llama_server() is None, reason="llama-server is not built (promptopt lm build-server)"
)

QUESTIONS = [
    "What is the capital of France? Reply with one word.",
    "How many legs does a spider have? Reply with a number only.",
    "Is water wet? Reply yes or no.",
]


def _program_of(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


@pytest.mark.parametrize("engine", [engines.LLAMA_SERVER, engines.LLAMA_CPP_PYTHON])
def test_each_engine_serves_the_model_and_keeps_its_replies_apart(engine, tmp_path, monkeypatch):
    cache = tmp_path / "c.sqlite"
    other = engines.LLAMA_CPP_PYTHON if engine == engines.LLAMA_SERVER else engines.LLAMA_SERVER
    monkeypatch.setenv(engines.ENGINE_ENV, other)
    first = po.LM("local", cache=cache, max_tokens=8)
    first_replies = [first(q).text for q in QUESTIONS]

    monkeypatch.setenv(engines.ENGINE_ENV, engine)
    lm = po.LM("local", cache=cache, max_tokens=8)
    replies = [lm(q) for q in QUESTIONS]
    server = lm.backend.server
    assert server.engine.name == engine
    program = _program_of(server.pid)
    assert ("llama_cpp.server" in program) == (engine == engines.LLAMA_CPP_PYTHON), program
    # The other engine's replies were in the cache, yet every question went to this server.
    assert lm.usage.uncached_calls == len(QUESTIONS) and lm.usage.cached_calls == 0
    assert "paris" in replies[0].text.lower() and "8" in replies[1].text, [r.text for r in replies]
    assert server.context_tokens == lm.context_window() == 8192
    assert lm.identity()["server"] == engine
    assert all(r.prompt_tokens > 0 and r.completion_tokens > 0 for r in replies)
    # The same llama.cpp code and model, greedy decoding: the engines mostly agree word for word.
    same = sum(a == b.text for a, b in zip(first_replies, replies))
    assert same >= 2, (first_replies, [r.text for r in replies])


@pytest.fixture(autouse=True)
def _stop_the_fallback_server(monkeypatch):
    """The other real-LM tests use the default engine; the fallback's server is not left running."""
    yield
    monkeypatch.setenv(engines.ENGINE_ENV, engines.LLAMA_CPP_PYTHON)
    LocalServer.for_model(None).release()
