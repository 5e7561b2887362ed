"""The CMake flags llama.cpp is built with on this CPU: the llama-cpp-python wheel and llama-server.

Run as a script (``python promptopt/lm/cpu_flags.py``) it prints them on one line, which is how
scripts/setup.sh builds the wheel before promptopt and its dependencies are installed; it imports
nothing from promptopt for that reason.

The instruction sets are named instead of ``GGML_NATIVE=ON`` so a build is the same on every machine
with the same features, and AMX kernels are left out on purpose: on some virtual machines they crash
at the first batch.
"""

from __future__ import annotations

import platform
from pathlib import Path


def llama_cmake_flags(cpuinfo: str | None = None, machine: str | None = None) -> list[str]:
    if (machine or platform.machine()) != "x86_64":
        return ["-DGGML_NATIVE=ON"]
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    features = set(cpuinfo.split())
    flags = ["-DGGML_NATIVE=OFF", "-DGGML_AVX=ON", "-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON"]
    flags += ["-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF"]
    if {"avx512f", "avx512bw", "avx512vl"} <= features:
        flags.append("-DGGML_AVX512=ON")
        optional = [
            ("avx512vbmi", "-DGGML_AVX512_VBMI=ON"),
            ("avx512_vnni", "-DGGML_AVX512_VNNI=ON"),
            ("avx512_bf16", "-DGGML_AVX512_BF16=ON"),
            ("avx_vnni", "-DGGML_AVX_VNNI=ON"),
        ]
        flags += [flag for feature, flag in optional if feature in features]
    else:
        flags.append("-DGGML_AVX512=OFF")
    return flags


if __name__ == "__main__":
    print(" ".join(llama_cmake_flags()))
