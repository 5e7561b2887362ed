"""Two local models answering at once on this machine, with and without turns on the CPU.

A judge on the 1.5B model and a task program on the 0.5B model (or two runs on one machine) send
requests to two llama.cpp servers at the same time. Here one thread sends short requests to the
0.5B model while another sends requests to the 1.5B model, first with turns off
(``PROMPTOPT_LOCAL_TURNS=0``: both servers compute at once) and then with turns on (the default:
one request at a time machine-wide, :mod:`promptopt.lm.compute_turns`), and the same requests are
then sent one after the other as a baseline. Each phase asks questions of its own (no reply cache,
no prompt-prefix reuse from an earlier phase); both servers are started and warmed before timing.

    python benchmarks/compute_turns.py --out results/local-server/compute-turns.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import promptopt as po
from promptopt.io import write_json_atomic
from promptopt.lm.compute_turns import ENV
from promptopt.provenance import collect

SMALL, LARGE = "local", "local/large"


def questions(phase: str, n: int, start: int) -> list[str]:
    return [
        f"[{phase}] In one short sentence: what is {start + i} times {start + 2 * i + 3}, and is it even?"
        for i in range(n)
    ]


def ask_all(lm: po.LM, prompts: list[str], latencies: list[float]) -> None:
    for p in prompts:
        t0 = time.perf_counter()
        lm(p, cache=False)
        latencies.append(time.perf_counter() - t0)


def phase(name: str, small: po.LM, large: po.LM, n_small: int, n_large: int, *, together: bool) -> dict:
    small_q = questions(name, n_small, 11)
    large_q = questions(name, n_large, 57)
    small_s: list[float] = []
    large_s: list[float] = []
    t0 = time.perf_counter()
    if together:
        threads = [
            threading.Thread(target=ask_all, args=(small, small_q, small_s)),
            threading.Thread(target=ask_all, args=(large, large_q, large_s)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:
        ask_all(small, small_q, small_s)
        ask_all(large, large_q, large_s)
    wall = time.perf_counter() - t0
    row = {
        "wall_s": round(wall, 2),
        "small_requests": n_small,
        "large_requests": n_large,
        "small_median_s": round(statistics.median(small_s), 2),
        "large_median_s": round(statistics.median(large_s), 2),
        "large_max_s": round(max(large_s), 2),
    }
    print(name, row, flush=True)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="results/local-server/compute-turns.json")
    ap.add_argument("--small-requests", type=int, default=6)
    ap.add_argument("--large-requests", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=32)
    args = ap.parse_args()

    small = po.LM(SMALL, max_tokens=args.max_tokens, cache=False)
    large = po.LM(LARGE, max_tokens=args.max_tokens, cache=False)
    for lm in (small, large):  # start both servers and load the weights before any timing
        lm("Say ok.", cache=False)

    phases = {}
    os.environ[ENV] = "0"
    phases["together_no_turns"] = phase(
        "together_no_turns", small, large, args.small_requests, args.large_requests, together=True
    )
    os.environ[ENV] = "1"
    phases["together_with_turns"] = phase(
        "together_with_turns", small, large, args.small_requests, args.large_requests, together=True
    )
    phases["one_after_the_other"] = phase(
        "one_after_the_other", small, large, args.small_requests, args.large_requests, together=False
    )
    no_turns, with_turns = phases["together_no_turns"]["wall_s"], phases["together_with_turns"]["wall_s"]
    record = {
        "phases": phases,
        "speedup_of_turns": round(no_turns / with_turns, 2),
        "max_tokens": args.max_tokens,
        "provenance": collect(lms={"small": small.identity(), "large": large.identity()}).to_dict(),
    }
    write_json_atomic(Path(args.out), record)
    print(f"both servers at once took {record['speedup_of_turns']}x the wall time of turns; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
