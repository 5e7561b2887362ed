"""Choosing the program that serves a local model, and keeping its replies apart."""

import json
import stat
from pathlib import Path

import pytest

from promptopt.lm import engines, identity
from promptopt.lm.engines import LLAMA_CPP_PYTHON, LLAMA_SERVER, ServerSettings, resolve_engine
from promptopt.lm.models import LocalModelError


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTOPT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv(engines.ENGINE_ENV, raising=False)
    monkeypatch.delenv(engines.BINARY_ENV, raising=False)
    engines._build_of.cache_clear()
    return tmp_path / "cache"


def _fake_binary(folder: Path, version: str = "0.3.36") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    binary = folder / LLAMA_SERVER
    binary.write_text("#!/bin/sh\n")
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    (folder / f"{LLAMA_SERVER}.json").write_text(json.dumps({"llama_cpp_python": version, "cmake_args": []}))
    return binary


def test_llama_server_is_the_default_once_built_and_llama_cpp_python_otherwise(cache_dir):
    assert resolve_engine().name == LLAMA_CPP_PYTHON  # nothing built in this cache
    binary = _fake_binary(cache_dir / "bin")
    engine = resolve_engine()
    assert engine.name == LLAMA_SERVER and engine.executable == str(binary)


def test_the_environment_chooses_and_a_missing_choice_is_an_error_not_a_switch(cache_dir, monkeypatch):
    _fake_binary(cache_dir / "bin")
    monkeypatch.setenv(engines.ENGINE_ENV, LLAMA_CPP_PYTHON)
    assert resolve_engine().name == LLAMA_CPP_PYTHON
    monkeypatch.setenv(engines.ENGINE_ENV, "vllm")
    with pytest.raises(LocalModelError, match="names no local server; choose one of llama-server"):
        resolve_engine()
    monkeypatch.setenv(engines.ENGINE_ENV, LLAMA_SERVER)
    (cache_dir / "bin" / LLAMA_SERVER).unlink()
    with pytest.raises(LocalModelError, match="promptopt lm build-server"):
        resolve_engine()


def test_a_binary_named_by_path_must_be_executable(cache_dir, monkeypatch, tmp_path):
    monkeypatch.setenv(engines.BINARY_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(LocalModelError, match="nowhere is not an executable file"):
        resolve_engine()
    binary = _fake_binary(tmp_path / "elsewhere")
    (binary.parent / f"{LLAMA_SERVER}.json").unlink()  # a binary promptopt did not build
    monkeypatch.setenv(engines.BINARY_ENV, str(binary))
    engine = resolve_engine()
    assert engine.executable == str(binary)
    assert engine.identity()["server_build"].startswith("binary sha256 ")


def test_each_engine_is_started_with_the_same_model_context_and_threads():
    settings = ServerSettings(Path("/m/q.gguf"), "qwen", 4321, 8192, 2)
    server = engines.Engine(LLAMA_SERVER, "/bin/llama-server").command(settings)
    python = engines.Engine(LLAMA_CPP_PYTHON, "/usr/bin/python3").command(settings)

    def value(cmd, flag):
        return cmd[cmd.index(flag) + 1]

    assert value(server, "--model") == value(python, "--model") == "/m/q.gguf"
    assert value(server, "--ctx-size") == value(python, "--n_ctx") == "8192"
    assert value(server, "--threads") == value(python, "--n_threads") == "2"
    assert value(server, "--port") == value(python, "--port") == "4321"
    assert value(server, "--parallel") == "1"  # replies never depend on batch neighbours
    assert python[1:3] == ["-m", "llama_cpp.server"]


def test_the_engine_is_part_of_a_local_models_identity_and_cache_key(cache_dir, monkeypatch):
    from promptopt.lm.backends.llama_server import LlamaServerBackend
    from promptopt.lm.server import LocalServer

    monkeypatch.setattr("promptopt.lm.model_files.resolve_model_path", lambda name: Path(f"/m/{name}.gguf"))
    monkeypatch.setattr("promptopt.lm.model_files.models_dir", lambda: Path("/m"))
    before = identity.local_identity(None)
    assert before["server"] == LLAMA_CPP_PYTHON and before["server_build"].startswith("llama-cpp-python ")
    _fake_binary(cache_dir / "bin", version="0.3.36")
    after = identity.local_identity(None)
    assert after["server"] == LLAMA_SERVER and after["server_build"] == "llama-cpp-python 0.3.36 source"
    assert {k: v for k, v in before.items() if not k.startswith("server")} == {
        k: v for k, v in after.items() if not k.startswith("server")
    }

    keys = {}
    for name in (LLAMA_CPP_PYTHON, LLAMA_SERVER):
        monkeypatch.setenv(engines.ENGINE_ENV, name)
        backend = LlamaServerBackend(None, {})
        server = LocalServer(backend_spec(), engine=resolve_engine())
        server.model_sha256 = "ab" * 32
        backend._server = server
        keys[name] = backend.cache_identity()
    assert keys[LLAMA_CPP_PYTHON] == f"local/{backend_spec().name}@{'ab' * 8}"
    assert keys[LLAMA_SERVER] == keys[LLAMA_CPP_PYTHON] + "+llama-server(llama-cpp-python 0.3.36 source)"


def backend_spec():
    from promptopt.lm.models import get_model

    return get_model(None)


def test_servers_of_two_engines_keep_their_state_apart(cache_dir, monkeypatch):
    from promptopt.lm.server import LocalServer

    _fake_binary(cache_dir / "bin")
    by_engine = {}
    for name in (LLAMA_CPP_PYTHON, LLAMA_SERVER):
        monkeypatch.setenv(engines.ENGINE_ENV, name)
        by_engine[name] = LocalServer.for_model(None)
    assert by_engine[LLAMA_CPP_PYTHON] is not by_engine[LLAMA_SERVER]
    assert by_engine[LLAMA_CPP_PYTHON].dir.parent.name == LLAMA_CPP_PYTHON
    assert by_engine[LLAMA_SERVER].dir.parent.name == LLAMA_SERVER
    assert by_engine[LLAMA_SERVER].status() == {
        "model": backend_spec().name,
        "engine": LLAMA_SERVER,
        "running": False,
    }


def test_a_server_from_another_cache_or_binary_is_never_handed_back(cache_dir, tmp_path, monkeypatch):
    from promptopt.lm.server import LocalServer

    monkeypatch.setenv(engines.ENGINE_ENV, LLAMA_SERVER)
    monkeypatch.setenv(engines.BINARY_ENV, str(_fake_binary(tmp_path / "one")))
    first = LocalServer.for_model(None)
    assert LocalServer.for_model(None) is first
    monkeypatch.setenv(engines.BINARY_ENV, str(_fake_binary(tmp_path / "two")))
    assert LocalServer.for_model(None) is not first
    monkeypatch.setenv("PROMPTOPT_CACHE_DIR", str(tmp_path / "other-cache"))
    monkeypatch.setenv(engines.BINARY_ENV, str(tmp_path / "one" / "llama-server"))
    other = LocalServer.for_model(None)
    assert other is not first and str(other.dir).startswith(str(tmp_path / "other-cache"))


def test_slots_come_from_the_environment_for_llama_server_only(cache_dir, monkeypatch):
    from promptopt.lm.engines import local_slots

    server = engines.Engine(LLAMA_SERVER, "/bin/llama-server")
    python = engines.Engine(LLAMA_CPP_PYTHON, "/usr/bin/python3")
    assert local_slots(server) == local_slots(python) == 1
    monkeypatch.setenv(engines.SLOTS_ENV, "3")
    assert local_slots(server) == 3 and local_slots(python) == 1
    cmd = server.command(ServerSettings(Path("/m/q.gguf"), "qwen", 1, 4096, 2, slots=3))
    assert cmd[cmd.index("--parallel") + 1] == "3"
    assert cmd[cmd.index("--ctx-size") + 1] == str(3 * 4096)  # each slot keeps the whole window
    for bad in ("0", "two"):
        monkeypatch.setenv(engines.SLOTS_ENV, bad)
        with pytest.raises(LocalModelError, match=f"PROMPTOPT_LOCAL_SLOTS='{bad}' must be a whole number"):
            local_slots(server)


def test_a_local_lm_sends_as_many_requests_at_once_as_the_server_has_slots(cache_dir, monkeypatch):
    import promptopt as po

    _fake_binary(cache_dir / "bin")
    assert po.LM("local", cache=False)._slots._initial_value == 1
    monkeypatch.setenv(engines.SLOTS_ENV, "2")
    assert po.LM("local", cache=False)._slots._initial_value == 2
    monkeypatch.setenv(engines.ENGINE_ENV, LLAMA_CPP_PYTHON)
    assert po.LM("local", cache=False)._slots._initial_value == 1


def test_cpu_flags_name_the_instruction_sets_and_leave_amx_out():
    from promptopt.lm.cpu_flags import llama_cmake_flags

    avx512 = "flags : fpu avx2 avx512f avx512bw avx512vl avx512_vnni amx_tile amx_int8"
    flags = llama_cmake_flags(avx512, "x86_64")
    assert "-DGGML_NATIVE=OFF" in flags and "-DGGML_AVX512=ON" in flags and "-DGGML_AVX512_VNNI=ON" in flags
    assert "-DGGML_AMX_TILE=OFF" in flags and "-DGGML_AVX512_BF16=ON" not in flags
    assert "-DGGML_AVX512=OFF" in llama_cmake_flags("flags : fpu avx2", "x86_64")
    assert llama_cmake_flags("", "aarch64") == ["-DGGML_NATIVE=ON"]


def test_a_build_is_reused_only_for_the_same_release_and_flags(cache_dir):
    from promptopt.lm.server_build import is_built

    _fake_binary(cache_dir / "bin", version="0.3.36")
    record = cache_dir / "bin" / f"{LLAMA_SERVER}.json"
    record.write_text(json.dumps({"llama_cpp_python": "0.3.36", "cmake_args": ["-DGGML_AVX2=ON"]}))
    assert is_built("0.3.36", ["-DGGML_AVX2=ON"])
    assert not is_built("0.3.37", ["-DGGML_AVX2=ON"])
    assert not is_built("0.3.36", ["-DGGML_NATIVE=ON"])
    (cache_dir / "bin" / LLAMA_SERVER).unlink()
    assert not is_built("0.3.36", ["-DGGML_AVX2=ON"])


def test_servers_with_other_slots_are_other_servers_with_their_own_replies(cache_dir, monkeypatch):
    from promptopt.lm.backends.llama_server import LlamaServerBackend
    from promptopt.lm.server import LocalServer

    _fake_binary(cache_dir / "bin")
    monkeypatch.setenv(engines.SLOTS_ENV, "2")
    server = LocalServer(backend_spec(), engine=resolve_engine())
    assert server.dir.name == f"{backend_spec().name}-2-slots"
    server.model_sha256 = "ab" * 32
    backend = LlamaServerBackend(None, {})
    backend._server = server
    assert "+2-slots+llama-server(" in backend.cache_identity()
    assert engines.Engine(LLAMA_SERVER, "x").health_path == "/health"  # ready only once loaded
    assert engines.Engine(LLAMA_CPP_PYTHON, "x").health_path == "/v1/models"


def test_lm_stop_stops_the_servers_of_every_engine_and_of_the_old_layout(cache_dir, capsys):
    import subprocess
    import sys

    from promptopt.cli import main

    name = backend_spec().name
    sleepers = []
    for folder in (cache_dir / "servers" / LLAMA_CPP_PYTHON / name, cache_dir / "servers" / name):
        folder.mkdir(parents=True)
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        sleepers.append(proc)
        (folder / "server.json").write_text(json.dumps({"pid": proc.pid, "port": 1}))
    try:
        assert main(["lm", "stop"]) == 0
        out = capsys.readouterr().out
        assert f"{LLAMA_CPP_PYTHON}/{name}" in out and f"servers/{name}" in out
        for proc in sleepers:
            assert proc.wait(timeout=10) is not None
        assert main(["lm", "stop"]) == 0 and "no server was running" in capsys.readouterr().out
    finally:
        for proc in sleepers:
            proc.kill()
