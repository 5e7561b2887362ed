"""How much time promptopt's LM layer adds around the model.

Four measurements, on the embedded local model (``LM("local")``):

a) Cached calls: a fresh cache in a temporary directory is filled with N distinct
   requests (the iris ``Predict`` prompts, sent through ``Predict`` -> ``LM``), then the
   same N requests are replayed as cache hits through the full ``LM.__call__`` path
   (one thread, then four threads) and through ``Predict`` (adapter render + LM cache
   hit + parse + trace).
b) Uncached calls: N short, fixed prompts (classification with ``max_tokens=16``, a few
   one-sentence explanations with ``max_tokens=64``; temperature 0) are sent both as a
   raw HTTP POST to the server's ``/chat/completions`` (urllib, no litellm) and through
   ``LM("local", cache=False)``. The two kinds alternate (raw, LM, raw, LM, ...) over
   two passes through the prompts, the second pass starting with the other kind
   (pass 1: raw p0, LM p1, raw p2, ...; pass 2: LM p0, raw p1, LM p2, ...), so load
   drifts cancel and both calls of a prompt follow the same request: llama.cpp reuses
   the KV cache of the previous request's common prefix, so a call that repeated the
   request just before it, or followed a different one, would be timed unfairly.
   ``--repeats`` (default 2) repeats the two passes, swapping which kind goes first.
c) The client side alone: the same requests, raw and through ``LM``, against a stub
   server (another process) that answers at once, so the server's jitter (tens of ms
   per call on a 2-core machine) does not drown the few ms the client adds.
d) The one-off cost of ``import litellm`` in a fresh interpreter.

Usage::

    .venv/bin/python benchmarks/lm_overhead.py [--n 30] [--out results/lm_overhead.json]

The requests are deterministic; the timings are not (they depend on the machine and on
whoever else is using the shared local server), so nothing here asserts on them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import promptopt as po
from langprobe import get_task
from promptopt.core.trace import collect_trace
from promptopt.lm.server import LocalServer

ROOT = Path(__file__).resolve().parents[1]

REVIEWS = [
    "The battery lasts all day and the screen is bright.",
    "It broke after two days and support never answered.",
    "Arrived on time. Does what the box says.",
    "Absolutely love the sound quality, worth every penny.",
    "The zipper jammed the first time I used it.",
    "Average coffee, friendly staff, long queue.",
    "Terrible smell, I returned it immediately.",
    "Fits perfectly and the fabric feels great.",
    "The manual is in a language I cannot read.",
    "Fast shipping, sturdy packaging, happy customer.",
    "Stopped charging after a week. Waste of money.",
    "It is a chair. I sit on it.",
]
TOPICS = [
    "photosynthesis",
    "a hash table",
    "the Doppler effect",
    "compound interest",
    "a binary search",
    "plate tectonics",
]
SENTIMENT_SYSTEM = (
    "Classify the sentiment of the customer review as positive, negative or neutral. Reply with one word."
)


def uncached_requests(n: int) -> list[dict[str, Any]]:
    """N fixed requests: mostly 16-token classifications, every fifth a 64-token explanation."""
    out: list[dict[str, Any]] = []
    for i in range(n):
        if i % 5 == 4:
            topic = TOPICS[(i // 5) % len(TOPICS)]
            messages = [{"role": "user", "content": f"Explain in one sentence what {topic} is."}]
            out.append({"messages": messages, "temperature": 0.0, "max_tokens": 64})
        else:
            review = REVIEWS[i % len(REVIEWS)]
            tag = f" (review #{i})" if i >= len(REVIEWS) else ""  # keeps every request distinct
            messages = [
                {"role": "system", "content": SENTIMENT_SYSTEM},
                {"role": "user", "content": f"Review{tag}: {review}"},
            ]
            out.append({"messages": messages, "temperature": 0.0, "max_tokens": 16})
    return out


def raw_post(api_base: str, model: str, req: dict[str, Any], timeout: float = 300.0) -> str:
    """The same body litellm sends (model, messages, temperature, max_tokens), with plain urllib."""
    body = json.dumps({"model": model, **req}).encode()
    http_req = urllib.request.Request(
        f"{api_base}/chat/completions",
        data=body,
        headers={"Content-Type": "application/json", "Authorization": "Bearer sk-local"},
        method="POST",
    )
    with urllib.request.urlopen(http_req, timeout=timeout) as resp:
        data = json.loads(resp.read())
    return data["choices"][0]["message"]["content"] or ""


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), linear interpolation."""
    s = sorted(values)
    if not s:
        return float("nan")
    k = (len(s) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def iris_examples(n: int) -> list[po.Example]:
    splits = get_task("iris").splits(seed=0)
    rows = [*splits.test, *splits.val, *splits.train]
    if n > len(rows):
        raise SystemExit(f"--n {n} is more than the {len(rows)} distinct iris requests available")
    return rows[:n]


# --- a) cached calls ---------------------------------------------------------


def bench_cached(n: int, rounds: int, cache_dir: Path) -> dict[str, Any]:
    task = get_task("iris")
    examples = iris_examples(n)
    lm = po.LM("local", cache=cache_dir / "lm_cache.sqlite", max_tokens=48)
    predictor = task.program("predict")

    # Fill: N real calls through Predict -> LM (misses, then written to the cache).
    predictor.set_lm(lm)
    requests: list[list[dict[str, str]]] = []
    fill_errors = 0
    start = time.perf_counter()
    for ex in examples:
        with collect_trace() as trace:
            try:
                predictor(**ex.inputs())
            except Exception:
                fill_errors += 1  # a reply the adapter cannot parse is still a cached request
        requests.append(trace[0].messages)
    fill_s = time.perf_counter() - start
    assert len(lm.cache) == n, f"expected {n} cached requests, found {len(lm.cache)}"  # type: ignore[arg-type]

    # LM.__call__ cache hits, one thread.
    for msgs in requests:  # warm-up: sqlite connection, page cache
        assert lm(msgs).cached
    start = time.perf_counter()
    for _ in range(rounds):
        for msgs in requests:
            lm(msgs)
    single_s = time.perf_counter() - start
    single_calls = rounds * n

    # Four threads, each replaying all N requests `rounds` times.
    threads = 4
    barrier = threading.Barrier(threads + 1)

    def worker() -> tuple[int, float, float]:
        for msgs in requests:  # per-thread sqlite connection
            lm(msgs)
        barrier.wait()
        t0 = time.perf_counter()  # timed in the workers: the main thread may wake up late
        count = 0
        for _ in range(rounds):
            for msgs in requests:
                count += lm(msgs).cached
        return count, t0, time.perf_counter()

    with ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(worker) for _ in range(threads)]
        barrier.wait()
        done = [f.result() for f in futures]
    hits = sum(d[0] for d in done)
    multi_s = max(d[2] for d in done) - min(d[1] for d in done)
    multi_calls = threads * rounds * n
    assert hits == multi_calls

    # Predict cache hits: render + LM cache hit + parse + trace entry.
    predictor_errors = 0
    start = time.perf_counter()
    for _ in range(rounds):
        for ex in examples:
            with collect_trace():
                try:
                    predictor(**ex.inputs())
                except Exception:
                    predictor_errors += 1
    predict_s = time.perf_counter() - start

    lm_us = 1e6 * single_s / single_calls
    predict_us = 1e6 * predict_s / (rounds * n)
    return {
        "requests": n,
        "rounds": rounds,
        "fill": {"seconds": fill_s, "per_call_s": fill_s / n, "unparsed_replies": fill_errors},
        "lm_call_1_thread": {
            "calls": single_calls,
            "seconds": single_s,
            "calls_per_s": single_calls / single_s,
            "us_per_call": lm_us,
        },
        "lm_call_4_threads": {
            "calls": multi_calls,
            "seconds": multi_s,
            "calls_per_s": multi_calls / multi_s,
            "us_per_call": 1e6 * multi_s / multi_calls,
        },
        "predict_call_1_thread": {
            "calls": rounds * n,
            "seconds": predict_s,
            "calls_per_s": rounds * n / predict_s,
            "us_per_call": predict_us,
            "adapter_and_trace_us_per_call": predict_us - lm_us,
            "unparsed_replies": predictor_errors // rounds,
        },
    }


# --- b) uncached calls -------------------------------------------------------


def bench_uncached(n: int, warmup: int, repeats: int) -> dict[str, Any]:
    lm = po.LM("local", cache=False)
    lm("Say ok.", max_tokens=2)  # starts/reuses the server, imports litellm
    server = lm.backend.server  # the embedded model's server, started by the call above
    api_base, model = server.api_base, server.spec.name
    leases = len(LocalServer.for_model(None).status().get("leases", []))

    reqs = uncached_requests(n)
    for req in uncached_requests(n + warmup)[n:]:  # distinct from the measured requests
        raw_post(api_base, model, req)
        lm(req["messages"], temperature=req["temperature"], max_tokens=req["max_tokens"])
    raw_post(api_base, model, reqs[-1])  # so p0 follows p_{n-1} in every pass

    # One sample = (prompt, repeat); each repeat is two passes with the kinds swapped.
    raw_s: dict[tuple[int, int], float] = {}
    lm_s: dict[tuple[int, int], float] = {}
    inner_s: dict[tuple[int, int], float] = {}  # litellm.completion as timed inside LM._request
    raw_text: dict[int, set[str]] = {i: set() for i in range(n)}
    lm_text: dict[int, set[str]] = {i: set() for i in range(n)}
    tokens: dict[int, tuple[int, int]] = {}
    order: list[tuple[str, int, int]] = []
    for r in range(repeats):
        first, second = ("raw", "lm") if r % 2 == 0 else ("lm", "raw")
        order += [((first, second)[i % 2], i, r) for i in range(n)]
        order += [((second, first)[i % 2], i, r) for i in range(n)]
    start_all = time.perf_counter()
    for kind, i, r in order:
        req = reqs[i]
        if kind == "raw":
            t0 = time.perf_counter()
            text = raw_post(api_base, model, req)
            raw_s[i, r] = time.perf_counter() - t0
            raw_text[i].add(text)
        else:
            t0 = time.perf_counter()
            c = lm(req["messages"], temperature=req["temperature"], max_tokens=req["max_tokens"])
            lm_s[i, r] = time.perf_counter() - t0
            inner_s[i, r] = c.latency
            lm_text[i].add(c.text)
            tokens[i] = (c.prompt_tokens, c.completion_tokens)
    total_wall = time.perf_counter() - start_all

    keys = sorted(raw_s)
    overhead_ms = [1000 * (lm_s[k] - raw_s[k]) for k in keys]
    outside_litellm_ms = [1000 * (lm_s[k] - inner_s[k]) for k in keys]
    mismatches = [  # every reply to one prompt, raw or through LM, should be the same text
        {"index": i, "raw": sorted(raw_text[i]), "lm": sorted(lm_text[i])}
        for i in range(n)
        if len(raw_text[i] | lm_text[i]) != 1
    ]
    raw_total, lm_total = sum(raw_s.values()), sum(lm_s.values())
    return {
        "requests": n,
        "repeats": repeats,
        "samples": len(keys),
        "warmup_pairs": warmup,
        "max_tokens_16": sum(r["max_tokens"] == 16 for r in reqs),
        "max_tokens_64": sum(r["max_tokens"] == 64 for r in reqs),
        "api_base": api_base,
        "model": model,
        "processes_leasing_server": leases,
        "wall_s": total_wall,
        "raw_total_s": raw_total,
        "lm_total_s": lm_total,
        "share_outside_server": 1 - raw_total / lm_total,
        "overhead_ms_median": statistics.median(overhead_ms),
        "overhead_ms_p90": pct(overhead_ms, 90),
        "overhead_ms_mean": statistics.fmean(overhead_ms),
        "overhead_ms_sem": statistics.stdev(overhead_ms) / len(overhead_ms) ** 0.5,
        "promptopt_outside_litellm_ms_median": statistics.median(outside_litellm_ms),
        "promptopt_outside_litellm_ms_p90": pct(outside_litellm_ms, 90),
        "raw_ms_median": 1000 * statistics.median(raw_s.values()),
        "lm_ms_median": 1000 * statistics.median(lm_s.values()),
        "prompt_tokens_per_pass": sum(p for p, _ in tokens.values()),
        "completion_tokens_per_pass": sum(c for _, c in tokens.values()),
        "same_text": n - len(mismatches),
        "mismatches": mismatches,
        "per_call": [
            {
                "prompt": i,
                "repeat": r,
                "max_tokens": reqs[i]["max_tokens"],
                "raw_ms": round(1000 * raw_s[i, r], 2),
                "lm_ms": round(1000 * lm_s[i, r], 2),
                "litellm_ms": round(1000 * inner_s[i, r], 2),
                "prompt_tokens": tokens[i][0],
                "completion_tokens": tokens[i][1],
            }
            for i, r in keys
        ],
    }


# --- c) client cost against an instant stub server ---------------------------

STUB_SERVER = r"""
import http.server, json, sys
REPLY = json.dumps({
    "id": "stub", "object": "chat.completion", "created": 0, "model": sys.argv[1],
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "positive"}}],
    "usage": {"prompt_tokens": 40, "completion_tokens": 1, "total_tokens": 41},
}).encode()
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as uvicorn behind llama_cpp.server
    disable_nagle_algorithm = True  # else headers and body wait out a 40 ms delayed ACK
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(REPLY)))
        self.end_headers()
        self.wfile.write(REPLY)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def bench_stub(n: int, rounds: int, model: str) -> dict[str, Any]:
    """The client side alone: the same requests against a server (another process) that answers at once."""
    proc = subprocess.Popen([sys.executable, "-c", STUB_SERVER, model], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        api_base = f"http://127.0.0.1:{int(proc.stdout.readline())}/v1"
        # What LM("local") routes to, pointed at the stub.
        lm = po.LM(f"openai/{model}", cache=False, api_base=api_base, api_key="sk-local")
        reqs = uncached_requests(n)
        for req in reqs[:3]:  # warm-up
            raw_post(api_base, model, req)
            lm(req["messages"], temperature=req["temperature"], max_tokens=req["max_tokens"])
        raw_s: list[float] = []
        lm_s: list[float] = []
        for r in range(rounds):
            for i, req in enumerate(reqs):
                kinds = ("raw", "lm") if (i + r) % 2 == 0 else ("lm", "raw")
                for kind in kinds:
                    t0 = time.perf_counter()
                    if kind == "raw":
                        raw_post(api_base, model, req)
                        raw_s.append(time.perf_counter() - t0)
                    else:
                        lm(req["messages"], temperature=req["temperature"], max_tokens=req["max_tokens"])
                        lm_s.append(time.perf_counter() - t0)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return {
        "calls_per_kind": len(raw_s),
        "raw_ms_median": 1000 * statistics.median(raw_s),
        "lm_ms_median": 1000 * statistics.median(lm_s),
        "lm_ms_p90": 1000 * pct(lm_s, 90),
        "client_overhead_ms_median": 1000 * (statistics.median(lm_s) - statistics.median(raw_s)),
        "note": "LM(openai/<model>, api_base=stub) vs urllib against a stub server answering at once",
    }


# --- d) import cost ----------------------------------------------------------


def subprocess_seconds(code: str, repeats: int) -> list[float]:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}  # as promptopt sets it: no network
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True)
        times.append(time.perf_counter() - t0)
    return times


def bench_import(repeats: int) -> dict[str, Any]:
    bare = subprocess_seconds("pass", repeats)
    litellm_t = subprocess_seconds("import litellm", repeats)
    promptopt_t = subprocess_seconds("import promptopt", repeats)
    base = statistics.median(bare)
    return {
        "repeats": repeats,
        "python_startup_s": base,
        "import_litellm_s": statistics.median(litellm_t) - base,
        "import_promptopt_s": statistics.median(promptopt_t) - base,
        "note": "median subprocess wall time minus a bare interpreter; LITELLM_LOCAL_MODEL_COST_MAP=True",
    }


# --- main --------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=30, help="distinct requests per measurement (default 30)")
    parser.add_argument("--rounds", type=int, default=200, help="replays of the N cached requests")
    parser.add_argument("--warmup", type=int, default=3, help="uncached warm-up pairs (default 3)")
    parser.add_argument("--repeats", type=int, default=2, help="uncached samples per prompt and kind")
    parser.add_argument("--stub-rounds", type=int, default=10, help="passes over the N prompts (stub)")
    parser.add_argument("--import-repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "results" / "lm_overhead.json"))
    args = parser.parse_args(argv)
    if args.n < 3:
        parser.error("--n must be at least 3")

    started = time.perf_counter()
    print(f"[a] cached calls: filling a fresh cache with {args.n} iris requests ...", flush=True)
    with tempfile.TemporaryDirectory(prefix="lm_overhead_") as tmp:
        cached = bench_cached(args.n, args.rounds, Path(tmp))
    print(f"[b] uncached calls: {args.n} prompts x {args.repeats}, raw and LM interleaved ...", flush=True)
    uncached = bench_uncached(args.n, args.warmup, args.repeats)
    print("[c] client cost against an instant stub server ...", flush=True)
    stub = bench_stub(args.n, args.stub_rounds, uncached["model"])
    print("[d] import cost ...", flush=True)
    imports = bench_import(args.import_repeats)

    from importlib import metadata

    from promptopt.lm.identity import lm_identity
    from promptopt.provenance import collect

    c1, c4, cp = cached["lm_call_1_thread"], cached["lm_call_4_threads"], cached["predict_call_1_thread"]
    u = uncached
    st = stub
    summary = (
        f"Cached LM calls: {c1['calls_per_s']:.0f}/s on 1 thread ({c1['us_per_call']:.0f} us each), "
        f"{c4['calls_per_s']:.0f}/s on 4 threads; a cached Predict call costs {cp['us_per_call']:.0f} us "
        f"({cp['adapter_and_trace_us_per_call']:.0f} us of it adapter, parse and trace). "
        f"Uncached local calls ({u['samples']} pairs, median call {u['lm_ms_median']:.0f} ms): "
        f"{100 * u['share_outside_server']:.1f}% of wall time is spent outside the server "
        f"(LM minus raw HTTP per call: median {u['overhead_ms_median']:.1f} ms, p90 "
        f"{u['overhead_ms_p90']:.1f} ms, mean {u['overhead_ms_mean']:.1f} +- {u['overhead_ms_sem']:.1f} ms; "
        f"the spread is the server's own jitter); {u['same_text']}/{u['requests']} prompts gave identical "
        f"replies both ways. Against an instant stub server the client side costs "
        f"{st['lm_ms_median']:.1f} ms per LM call vs {st['raw_ms_median']:.1f} ms raw "
        f"(+{st['client_overhead_ms_median']:.1f} ms, "
        f"{100 * st['client_overhead_ms_median'] / u['lm_ms_median']:.1f}% of a median local call). "
        f"import litellm costs {imports['import_litellm_s']:.2f} s once per process."
    )
    result = {
        "benchmark": "lm_overhead",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "n": args.n,
        "model": u["model"],
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "litellm": metadata.version("litellm"),
            "llama_cpp_python": metadata.version("llama-cpp-python"),
            "promptopt": po.__version__,
        },
        "cached": cached,
        "uncached": uncached,
        "stub_server": stub,
        "imports": imports,
        "total_seconds": time.perf_counter() - started,
        "summary": summary,
        "provenance": collect(lms={"task": lm_identity("local")}).to_dict(),
    }

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")

    rows = [
        ("cached LM call, 1 thread", f"{c1['calls_per_s']:.0f} calls/s", f"{c1['us_per_call']:.0f} us"),
        ("cached LM call, 4 threads", f"{c4['calls_per_s']:.0f} calls/s", f"{c4['us_per_call']:.0f} us"),
        ("cached Predict call", f"{cp['calls_per_s']:.0f} calls/s", f"{cp['us_per_call']:.0f} us"),
        ("uncached: raw HTTP median", "", f"{u['raw_ms_median']:.1f} ms"),
        ("uncached: LM median", "", f"{u['lm_ms_median']:.1f} ms"),
        ("uncached: LM - raw, median", "", f"{u['overhead_ms_median']:.1f} ms"),
        ("uncached: LM - raw, p90", "", f"{u['overhead_ms_p90']:.1f} ms"),
        ("uncached: share outside server", f"{100 * u['share_outside_server']:.2f}%", ""),
        ("uncached: same text (raw vs LM)", f"{u['same_text']}/{u['requests']}", ""),
        ("stub server: raw HTTP median", "", f"{stub['raw_ms_median']:.2f} ms"),
        ("stub server: LM median", "", f"{stub['lm_ms_median']:.2f} ms"),
        ("import litellm (once)", "", f"{imports['import_litellm_s']:.2f} s"),
    ]
    width = max(len(r[0]) for r in rows)
    print()
    print(f"{'measure':<{width}}  {'rate':>16}  {'time':>12}")
    for name, rate, t in rows:
        print(f"{name:<{width}}  {rate:>16}  {t:>12}")
    print()
    print(summary)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
