"""GEPA's parallel proposals against one at a time, on an LM with a fixed latency.

A stand-in LM answers every call after a fixed delay (50 ms for the task, 200 ms for reflection) and
serves any number of calls at once, as an API or a batched server does; the 2-core machine then does
not hide the overlap. The toy task's answers depend on a hash of the instruction and the word, so
candidates differ, none is perfect, and every run spends its whole budget. For each number of
proposals per round the script records the wall time, rounds, metric calls and best validation
score, the speedup over one at a time, and fits Amdahl's law to the speedups to estimate rounds of
N proposals on N machines (each proposal's LM calls on its own machine; no network time).

    python benchmarks/parallel_proposals.py --out results/parallel-proposals.json
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

import numpy as np
from scipy.optimize import curve_fit

from promptopt.io import write_json_atomic
from promptopt.optimizers import GEPA
from promptopt.provenance import collect
from promptopt.testing import ScriptedLM, toy_examples, toy_metric, toy_program, toy_request

TASK_LATENCY, REFLECTION_LATENCY = 0.05, 0.2


def task_reply(messages):
    time.sleep(TASK_LATENCY)
    word, system, _ = toy_request(messages)
    digest = hashlib.sha256(f"{system}|{word}".encode()).digest()
    return f"out: {word.upper() if digest[0] < 150 else word}"  # right about 59% of the time


def reflection_reply(messages):
    time.sleep(REFLECTION_LATENCY)
    digest = hashlib.sha256(messages[-1]["content"].encode()).hexdigest()[:8]
    return f"Rules:\n- Write the word in capitals (variant {digest})."


def run(k: int, budget: int) -> dict:
    gepa = GEPA(
        toy_metric,
        max_metric_calls=budget,
        reflection_lm=ScriptedLM(reflection_reply),
        proposer="rules",
        progress=False,
        evolve_demos=False,
        use_merge=False,
        minibatch_size=3,
        num_threads=3,
        parallel_proposals=k,
        max_stalled_iterations=1000,
        seed=0,
    )
    start = time.perf_counter()
    result = gepa.compile(
        toy_program(), toy_examples(12), toy_examples(8, offset=12), lm=ScriptedLM(task_reply)
    )
    seconds = time.perf_counter() - start
    iterations = max((c.iteration for c in result.candidates), default=0)
    return {
        "parallel_proposals": k,
        "seconds": round(seconds, 2),
        "metric_calls": result.budget.metric_calls,
        "reflection_calls": result.budget.proposer_lm_calls,
        "candidates": len(result.candidates),
        "last_candidate_iteration": iterations,
        "best_val_score": result.best_score,
        "stop_reason": result.stop_reason,
    }


def amdahl(n, parallel_fraction):
    return 1.0 / ((1.0 - parallel_fraction) + parallel_fraction / n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", type=int, default=200, help="metric calls per run")
    ap.add_argument("--ks", default="1,2,4,8", help="proposals per round to measure")
    ap.add_argument("--out", default="results/parallel-proposals.json")
    args = ap.parse_args()
    rows = [run(int(k), args.budget) for k in args.ks.split(",")]
    base = rows[0]["seconds"]
    for row in rows:
        row["speedup"] = round(base / row["seconds"], 2)
    ks = np.array([r["parallel_proposals"] for r in rows], dtype=float)
    speedups = np.array([r["speedup"] for r in rows])
    (fraction,), _ = curve_fit(amdahl, ks, speedups, p0=[0.8], bounds=(0.0, 1.0))
    estimate = {str(n): round(float(amdahl(n, fraction)), 2) for n in (2, 4, 8, 16, 32, 64)}
    out = {
        "what": "GEPA rounds of k proposals at once vs one at a time, same budget, fixed-latency LM",
        "lm": {
            "task_latency_s": TASK_LATENCY,
            "reflection_latency_s": REFLECTION_LATENCY,
            "concurrency": "unbounded",
        },
        "budget": args.budget,
        "runs": rows,
        "n_machines_estimate": {
            "model": "Amdahl's law fitted to the measured speedups: speedup(N) = 1 / ((1 - p) + p / N)",
            "parallel_fraction": round(float(fraction), 3),
            "speedup_at_n": estimate,
            "assumes": "one proposal's LM calls per machine, no network time, a round of N proposals",
        },
        "provenance": collect().to_dict(),
    }
    write_json_atomic(Path(args.out), out)
    for row in rows:
        print(row)
    print(f"fitted parallel fraction {fraction:.3f}; estimated speedup on N machines: {estimate}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
