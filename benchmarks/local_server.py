"""llama.cpp's ``llama-server`` against llama-cpp-python's server, on this machine, same model.

Each measurement runs in a child process with an empty promptopt cache of its own (no cached
replies, no running server; the model file is shared), once per engine, the two engines taking
turns:

- ``requests``: the server's start-up, 24 short classification requests that share a long
  instruction (requests/s, one at a time as promptopt sends them), 3 long replies (generated
  tokens/s), the server's peak resident memory, and the replies themselves (greedy decoding: how
  many are the same text under both engines);
- ``requests_2_slots`` (llama-server only): the same with two slots and two requests in flight
  (continuous batching), and whether the replies stay those of one slot;
- ``quick``: the README's main job, ``python -m promptopt.bench langprobe --preset quick``;
- ``peers_cell``: one cell of experiments/peers_local.toml (the gepa library on iris, seed 0).

Finished measurements are kept in the output file, so a rerun continues where it stopped.

    python benchmarks/local_server.py --out results/local-server/comparison.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from promptopt.bench.store import Store
from promptopt.io import write_json_atomic
from promptopt.lm.engines import (
    BINARY_ENV,
    ENGINE_ENV,
    LLAMA_CPP_PYTHON,
    LLAMA_SERVER,
    SLOTS_ENV,
    find_llama_server,
    resolve_engine,
)
from promptopt.lm.identity import local_identity
from promptopt.lm.model_files import models_dir
from promptopt.provenance import collect

ROOT = Path(__file__).resolve().parents[1]
ENGINES = (LLAMA_CPP_PYTHON, LLAMA_SERVER)
STAGES = ("requests", "quick", "peers_cell", "requests_2_slots")

INSTRUCTION = (
    "You classify iris flowers from four measurements in centimetres. Think about what separates the "
    "species: Iris setosa has short, narrow petals (petal length under about 2 cm, petal width under "
    "about 0.6 cm) and relatively wide sepals. Iris versicolor has medium petals (length roughly 3 to "
    "5 cm, width 1.0 to 1.7 cm). Iris virginica has the longest and widest petals (length above about "
    "5 cm, width above about 1.7 cm) and usually the longest sepals. Petal measurements separate the "
    "species far better than sepal measurements; when petal length and petal width disagree, trust "
    "petal width. Measurements near a boundary are uncertain: versicolor and virginica overlap for "
    "petal lengths between 4.8 and 5.1 cm. Answer with exactly one word, the species name in lower "
    "case: setosa, versicolor or virginica. Do not explain, do not add punctuation, do not repeat the "
    "measurements."
)
LONG_PROMPTS = (
    "Explain step by step how a hash table handles collisions, with an example in Python.",
    "Describe how the TCP three-way handshake works and what can go wrong during it.",
    "Write a short story of about 200 words about a lighthouse keeper who finds a message in a bottle.",
)


def flower(i: int) -> str:
    # Deterministic measurements spread over the three species' ranges.
    sl, sw = 4.5 + (i * 37 % 35) / 10, 2.0 + (i * 13 % 22) / 10
    pl, pw = 1.0 + (i * 29 % 60) / 10, 0.1 + (i * 17 % 25) / 10
    return f"sepal length {sl:.1f}, sepal width {sw:.1f}, petal length {pl:.1f}, petal width {pw:.1f}"


def measure_requests() -> dict:
    """In the child process: the numbers of the ``requests`` stage for the engine chosen by env."""
    import promptopt as po

    lm = po.LM("local", cache=False, max_tokens=8)
    start = time.perf_counter()
    server = lm.backend.server
    startup = time.perf_counter() - start
    lm(flower(99))  # the first reply loads the model into the cache and memory
    threads = lm._slots._initial_value  # as many requests in flight as the server has slots

    def ask(i: int) -> str:
        messages = [{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": flower(i)}]
        return lm(messages).text

    t = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        replies = list(pool.map(ask, range(24)))
    short_seconds = time.perf_counter() - t
    long_lm = po.LM("local", cache=False, max_tokens=256)
    long_tokens, long_seconds, long_replies = 0, 0.0, []
    for prompt in LONG_PROMPTS:
        t = time.perf_counter()
        c = long_lm(prompt)
        long_seconds += time.perf_counter() - t
        long_tokens += c.completion_tokens
        long_replies.append(c.text)
    status = Path(f"/proc/{server.pid}/status").read_text()
    memory = {
        line.split(":")[0]: int(line.split()[1]) // 1024
        for line in status.splitlines()
        if line.startswith(("VmRSS", "VmHWM"))
    }
    return {
        "engine": server.engine.name,
        "server_identity": server.engine.identity(),
        "startup_s": round(startup, 2),
        "slots": threads,
        "short_requests": len(replies),
        "short_requests_per_s": round(len(replies) / short_seconds, 3),
        "long_completion_tokens": long_tokens,
        "long_tokens_per_s": round(long_tokens / long_seconds, 2),
        "server_rss_mib": memory.get("VmRSS"),
        "server_peak_rss_mib": memory.get("VmHWM"),
        "short_replies": replies,
        "long_replies": long_replies,
    }


def child_env(engine: str, cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            ENGINE_ENV: engine,
            "PROMPTOPT_CACHE_DIR": str(cache),  # no cached replies, no running server
            "PROMPTOPT_MODELS_DIR": str(models_dir()),  # the same verified model file
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "benchmarks")]),
        }
    )
    binary = find_llama_server()
    if binary is not None:
        env[BINARY_ENV] = str(binary)
    return env


def bench_numbers(out: Path) -> dict:
    """Each cell's test score (optimized and baseline, in points) and metric calls, of a langprobe
    run stored under ``out``."""
    cells = {}
    for cell in Store(out).cells():
        if not cell.ok:
            raise SystemExit(f"cell {cell.key} failed: {cell.error}")
        n = cell.numbers
        cells[cell.key] = {
            "test": round(100 * n.optimized_test.score, 1),
            "baseline_test": round(100 * n.baseline_test.score, 1),
            "metric_calls": n.spending.metric_calls,
        }
    return cells


def engine_identities() -> dict[str, dict]:
    """The local model's identity as each engine serves it."""
    model = {k: v for k, v in local_identity().items() if not k.startswith("server")}
    return {engine: {**model, **resolve_engine(engine).identity()} for engine in ENGINES}


def run_stage(stage: str, engine: str) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"local-server-{engine}-") as tmp:
        env = child_env(engine, Path(tmp) / "cache")
        env[SLOTS_ENV] = "2" if stage == "requests_2_slots" else "1"
        if stage.startswith("requests"):
            cmd = [sys.executable, __file__, "--child-requests"]
        else:
            bench = [sys.executable, "-m", "promptopt.bench", "langprobe", "-q", "--out", f"{tmp}/out"]
            extra = (
                ["--preset", "quick"]
                if stage == "quick"
                else [
                    "--config",
                    "experiments/peers_local.toml",
                    "--tasks",
                    "iris",
                    "--optimizers",
                    "gepa_lib",
                    "--seeds",
                    "0",
                ]
            )
            cmd = bench + extra
        start = time.perf_counter()
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"{stage} with {engine} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        if stage.startswith("requests"):
            return {"seconds": round(seconds, 1), **json.loads(done.stdout.strip().splitlines()[-1])}
        return {
            "seconds": round(seconds, 1),
            "cells": bench_numbers(Path(tmp) / "out"),
            "command": " ".join(cmd[1:]),
        }


def same_count(a: list[str], b: list[str]) -> int:
    return sum(x == y for x, y in zip(a, b))


def summarize(measured: dict) -> dict:
    a, b = measured.get(f"requests/{LLAMA_CPP_PYTHON}"), measured.get(f"requests/{LLAMA_SERVER}")
    summary: dict = {}
    if a and b:
        summary["short_requests_per_s"] = {
            LLAMA_CPP_PYTHON: a["short_requests_per_s"],
            LLAMA_SERVER: b["short_requests_per_s"],
        }
        summary["long_tokens_per_s"] = {
            LLAMA_CPP_PYTHON: a["long_tokens_per_s"],
            LLAMA_SERVER: b["long_tokens_per_s"],
        }
        summary["server_peak_rss_mib"] = {
            LLAMA_CPP_PYTHON: a["server_peak_rss_mib"],
            LLAMA_SERVER: b["server_peak_rss_mib"],
        }
        same = same_count(a["short_replies"] + a["long_replies"], b["short_replies"] + b["long_replies"])
        summary["same_greedy_replies"] = f"{same} of {len(a['short_replies']) + len(a['long_replies'])}"
    one, two = measured.get(f"requests/{LLAMA_SERVER}"), measured.get(f"requests_2_slots/{LLAMA_SERVER}")
    if one and two:
        summary["llama_server_2_slots"] = {
            "short_requests_per_s": two["short_requests_per_s"],
            "speedup_over_1_slot": round(two["short_requests_per_s"] / one["short_requests_per_s"], 2),
            "same_replies_as_1_slot": f"{same_count(one['short_replies'], two['short_replies'])}"
            f" of {len(one['short_replies'])}",
        }
    for stage in STAGES:
        a, b = measured.get(f"{stage}/{LLAMA_CPP_PYTHON}"), measured.get(f"{stage}/{LLAMA_SERVER}")
        if a and b:
            summary[f"{stage}_seconds"] = {LLAMA_CPP_PYTHON: a["seconds"], LLAMA_SERVER: b["seconds"]}
            summary[f"{stage}_speedup"] = round(a["seconds"] / b["seconds"], 2)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results/local-server/comparison.json")
    parser.add_argument(
        "--stages", default=",".join(STAGES), help=f"comma-separated, from {', '.join(STAGES)}"
    )
    parser.add_argument("--child-requests", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_requests:
        print(json.dumps(measure_requests()))
        return
    if find_llama_server() is None:
        raise SystemExit("llama-server is not built here: run `promptopt lm build-server` first.")
    record = json.loads(args.out.read_text()) if args.out.exists() else {"measured": {}}
    for stage in args.stages.split(","):
        for engine in (LLAMA_SERVER,) if stage == "requests_2_slots" else ENGINES:
            key = f"{stage}/{engine}"
            if key in record["measured"]:
                continue
            print(f"{key} ...", flush=True)
            record["measured"][key] = run_stage(stage, engine)
            print(f"{key}: {record['measured'][key]['seconds']} s", flush=True)
            record["summary"] = summarize(record["measured"])
            record["provenance"] = collect(lms=engine_identities()).to_dict()
            write_json_atomic(args.out, record)
    print(json.dumps(record.get("summary", {}), indent=2))


if __name__ == "__main__":
    main()
