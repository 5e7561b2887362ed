"""Bench cells on a Ray cluster, on the real local model, against the local executor.

Starts a Ray cluster on this machine (a head and a worker node, each its own ``ray start``
processes; :mod:`promptopt.bench.local_ray`), runs the quick preset's iris cells through
``--executor ray`` with an empty LM cache (the cluster's workers call the local model), then the same
cells with the local executor from that LM cache, and records whether every cell's numbers (test
scores per example, baseline, chosen components, metric calls) came back the same, with each run's
seconds and the provenance.

    python experiments/ray_local_model.py --out results/ray/quick-iris.json
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from promptopt.bench.identity import experiment_provenance
from promptopt.bench.local_ray import local_ray_cluster
from promptopt.bench.spec import PRESETS
from promptopt.bench.store import Store
from promptopt.io import write_json_atomic
from promptopt.lm.engines import BINARY_ENV, find_llama_server
from promptopt.lm.model_files import models_dir

ROOT = Path(__file__).resolve().parents[1]
TASK = "iris"


def cell_numbers(out: Path) -> dict:
    numbers = {}
    for cell in Store(out).cells():
        if not cell.ok:
            raise SystemExit(f"cell {cell.key} failed: {cell.error}")
        n = cell.numbers
        numbers[cell.key] = {
            "optimized_test_scores": n.optimized_test.scores,
            "baseline_test_scores": n.baseline_test.scores,
            "components": dict(n.components),
            "metric_calls": n.spending.metric_calls,
        }
    return numbers


def bench(out: Path, env: dict[str, str], *executor: str) -> float:
    cmd = [sys.executable, "-m", "promptopt.bench", "langprobe", "--preset", "quick", "--tasks", TASK]
    cmd += ["--out", str(out), "-q", *executor]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return round(time.perf_counter() - start, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results/ray/quick-iris.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ray-local-model-") as tmp:
        env = {
            **os.environ,
            "PROMPTOPT_CACHE_DIR": f"{tmp}/cache",  # an empty LM cache, shared by both runs
            "PROMPTOPT_MODELS_DIR": str(models_dir()),
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "benchmarks")]),
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        }
        if (binary := find_llama_server()) is not None:
            env[BINARY_ENV] = str(binary)
        with local_ray_cluster(env) as cluster:
            ray_seconds = bench(Path(tmp) / "ray", env, "--executor", "ray", "--ray-address", cluster.address)
        local_seconds = bench(Path(tmp) / "local", env)
        on_ray, on_local = cell_numbers(Path(tmp) / "ray"), cell_numbers(Path(tmp) / "local")
    preset = PRESETS["quick"]
    record = {
        "what": "the quick preset's iris cells on a 2-node Ray cluster from an empty LM cache, then with "
        "the local executor from that cache",
        "cells": sorted(on_ray),
        "same_numbers": on_ray == on_local,
        "cells_differing": sorted(k for k in on_ray if on_ray[k] != on_local.get(k)),
        "ray_seconds": ray_seconds,
        "local_from_cache_seconds": local_seconds,
        "numbers": on_ray,
        "provenance": experiment_provenance(
            TASK, preset["split_seed"], preset["sizes"]["default"], {"task": "local", "reflection": "local"}
        ),
    }
    write_json_atomic(args.out, record)
    print(
        f"{len(on_ray)} cells; same numbers: {record['same_numbers']}; Ray {ray_seconds} s, "
        f"local from cache {local_seconds} s -> {args.out}"
    )


if __name__ == "__main__":
    main()
