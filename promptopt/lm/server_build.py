"""Build llama.cpp's ``llama-server`` from the source llama-cpp-python vendors.

The llama.cpp tree inside the pinned llama-cpp-python source package is the one its Python server
runs, so both engines of :mod:`promptopt.lm.engines` serve a model with the same llama.cpp code. The
build is kept in the promptopt cache with what it was built from (``llama-server.json``) and is
redone only when the llama-cpp-python version or the CMake flags change.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from promptopt.io import file_lock, write_json_atomic
from promptopt.lm.cpu_flags import llama_cmake_flags
from promptopt.lm.engines import LLAMA_SERVER, binary_dir
from promptopt.lm.models import LocalModelError

PINNED_LLAMA_CPP_PYTHON = "0.3.36"  # the release scripts/setup.sh builds its wheel from

# Only the server: no tests, examples, web UI download (there is no network at build time), HTTPS.
BASE_CMAKE_ARGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_APP=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_OPENSSL=OFF",
)


def llama_cpp_python_version() -> str:
    """The installed llama-cpp-python's version (its vendored llama.cpp is the one to build), else
    the pinned one."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llama_cpp_python")
    except PackageNotFoundError:
        return PINNED_LLAMA_CPP_PYTHON


def build_record_path() -> Path:
    return binary_dir() / f"{LLAMA_SERVER}.json"


def _wanted(version: str, cmake_args: list[str]) -> dict[str, object]:
    return {"llama_cpp_python": version, "cmake_args": cmake_args}


def is_built(version: str, cmake_args: list[str]) -> bool:
    try:
        record = json.loads(build_record_path().read_text())
    except (OSError, json.JSONDecodeError):
        return False
    wanted = _wanted(version, cmake_args)
    return (binary_dir() / LLAMA_SERVER).is_file() and all(record.get(k) == v for k, v in wanted.items())


def _source_package(version: str, log: list[str]) -> Path:
    """The llama-cpp-python source package, from the cache or downloaded once with pip."""
    from promptopt.lm.cache import default_cache_dir

    sources = default_cache_dir() / "sources"
    sources.mkdir(parents=True, exist_ok=True)
    found = sorted(sources.glob(f"llama_cpp_python-{version}.tar.gz"))
    if found:
        return found[0]
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", "llama-cpp-python",
           f"llama-cpp-python=={version}", "-d", str(sources)]  # fmt: skip
    log.append(" ".join(cmd))
    done = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(sources.glob(f"llama_cpp_python-{version}.tar.gz"))
    if done.returncode != 0 or not found:
        raise LocalModelError(
            f"Could not download the llama-cpp-python {version} source package (pip said: "
            f"{(done.stderr or done.stdout).strip()[-400:]}); "
            f"put llama_cpp_python-{version}.tar.gz in {sources}."
        )
    return found[0]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def build_llama_server(
    cmake_args: list[str] | None = None, *, jobs: int | None = None, force: bool = False
) -> Path:
    """Build ``llama-server`` (unless the same build is already there) and return its path.

    Args:
        cmake_args: CPU feature flags and the like; default: ``$CMAKE_ARGS`` split on spaces, else
            this CPU's flags (:mod:`promptopt.lm.cpu_flags`, as the llama-cpp-python wheel gets).
        jobs: parallel compile jobs (default: the CPU count).
        force: build again even when the same build exists.
    """
    version = llama_cpp_python_version()
    flags = (
        cmake_args
        if cmake_args is not None
        else (os.environ.get("CMAKE_ARGS", "").split() or llama_cmake_flags())
    )
    target = binary_dir() / LLAMA_SERVER
    binary_dir().mkdir(parents=True, exist_ok=True)
    with file_lock(binary_dir() / "build.lock"):
        if not force and is_built(version, flags):
            return target
        if shutil.which("cmake") is None:
            raise LocalModelError(
                "Building llama-server needs cmake and a C++ compiler (apt-get install cmake g++)."
            )
        log: list[str] = []
        package = _source_package(version, log)
        started = time.time()
        with tempfile.TemporaryDirectory(prefix="llama-server-build-") as tmp:
            root = f"llama_cpp_python-{version}/vendor/llama.cpp/"
            with tarfile.open(package) as tar:
                members = [m for m in tar.getmembers() if m.name.startswith(root)]
                if not members:
                    raise LocalModelError(f"{package} holds no vendor/llama.cpp source tree.")
                # Nothing may land outside the build folder.
                unsafe = [m.name for m in members if m.name.startswith("/") or ".." in Path(m.name).parts]
                if unsafe:
                    raise LocalModelError(f"{package} holds paths outside its folder: {unsafe[:3]}")
                if hasattr(tarfile, "data_filter"):  # Python 3.11.4+
                    tar.extractall(tmp, members=members, filter="data")
                else:  # links could point anywhere: the build needs none of them
                    tar.extractall(tmp, members=[m for m in members if not (m.issym() or m.islnk())])
            source = Path(tmp) / root
            build = Path(tmp) / "build"
            steps = [
                ["cmake", "-S", str(source), "-B", str(build), *BASE_CMAKE_ARGS, *flags],
                [
                    "cmake",
                    "--build",
                    str(build),
                    "--target",
                    LLAMA_SERVER,
                    "-j",
                    str(jobs or os.cpu_count() or 2),
                ],
            ]
            for step in steps:
                log.append(" ".join(step))
                done = subprocess.run(step, capture_output=True, text=True)
                if done.returncode != 0:
                    raise LocalModelError(
                        f"Building llama-server failed at `{' '.join(step)}`:\n"
                        f"{(done.stdout + done.stderr)[-2000:]}"
                    )
            built = build / "bin" / LLAMA_SERVER
            partial = target.with_suffix(".partial")
            shutil.copy2(built, partial)
            os.replace(partial, target)  # a server being started never sees half a binary
        write_json_atomic(
            build_record_path(),
            {
                **_wanted(version, flags),
                "source_package": package.name,
                "source_sha256": _sha256(package),
                "seconds": round(time.time() - started, 1),
                "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "commands": log,
            },
        )
    return target
