"""Judge an optimizer change on VALIDATION scores: its cells against a reference folder's cells of the
same task, program, LM and seed (the validation split is the data the optimizer chose on, so the test
split stays for the recorded comparison).

    python experiments/gepa_dev/compare_validation.py --reference results/comparison/r0.5b-b60 \
        --candidate results/gepa-dev/spare-reflection-r0.5b \
        --candidate results/gepa-dev/screened-staged-r0.5b --out results/gepa-dev/validation-r0.5b.json

For each candidate folder: the validation score of the optimized program per cell beside the
reference cell's, the mean per task and over cells, and the paired difference with a bootstrap
interval over cells and a sign test of the cells it raised against those it lowered (scipy.stats).
Both the reference's and the candidate's code versions are recorded with the output's provenance.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from promptopt.bench.records import CellRecord  # noqa: E402
from promptopt.bench.store import Store  # noqa: E402
from promptopt.provenance import collect  # noqa: E402


def cells_by_run(folder: Path, optimizer: str) -> dict[tuple[str, str, str, int], CellRecord]:
    store = Store(folder)
    out = {}
    for cell in store.cells():
        cfg = cell.config
        if cfg.optimizer == optimizer and cell.ok:
            out[(cfg.task, cfg.program, cfg.lm, cfg.seed)] = cell
    if store.unreadable:
        raise SystemExit(f"{folder}: unreadable cells: {[str(e) for e in store.unreadable]}")
    return out


def code_commits(cells: list[CellRecord]) -> list[str]:
    return sorted({c.provenance.code.commit or "unknown" for c in cells if c.provenance is not None})


def compare(reference: dict, candidate: dict, seed: int = 0) -> dict[str, Any]:
    keys = sorted(set(reference) & set(candidate))
    if not keys:
        raise SystemExit(
            "No cell of the candidate folder has a reference cell (same task, program, LM, seed)."
        )
    rows, by_task = [], defaultdict(list)
    for key in keys:
        ref, new = reference[key].finished().optimized_val, candidate[key].finished().optimized_val
        rows.append(
            {
                "task": key[0],
                "program": key[1],
                "lm": key[2],
                "seed": key[3],
                "reference": ref,
                "candidate": new,
            }
        )
        by_task[key[0]].append((ref, new))
    diffs = np.array([r["candidate"] - r["reference"] for r in rows])
    raised, lowered = int((diffs > 1e-12).sum()), int((diffs < -1e-12).sum())
    if len(diffs) > 1 and np.ptp(diffs) > 0:
        ci = stats.bootstrap((diffs,), np.mean, confidence_level=0.95, n_resamples=9999, random_state=seed)
        interval = [float(ci.confidence_interval.low), float(ci.confidence_interval.high)]
    else:
        interval = [float(diffs.mean()), float(diffs.mean())]
    return {
        "cells": rows,
        "per_task": {
            t: {
                "reference": float(np.mean([a for a, _ in v])),
                "candidate": float(np.mean([b for _, b in v])),
            }
            for t, v in sorted(by_task.items())
        },
        "mean_reference": float(np.mean([r["reference"] for r in rows])),
        "mean_candidate": float(np.mean([r["candidate"] for r in rows])),
        "mean_difference": float(diffs.mean()),
        "difference_ci95": interval,
        "raised": raised,
        "lowered": lowered,
        "sign_p": float(stats.binomtest(raised, raised + lowered).pvalue) if raised + lowered else 1.0,
        "missing_reference": [list(k) for k in sorted(set(candidate) - set(reference))],
        "candidate_commits": code_commits([candidate[k] for k in keys]),
        "reference_commits": code_commits([reference[k] for k in keys]),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reference", required=True, help="bench folder of the optimizer before the change")
    p.add_argument("--candidate", action="append", required=True, help="bench folder after it (repeatable)")
    p.add_argument("--optimizer", default="gepa", help="the optimizer's name in the reference folder")
    p.add_argument("--candidate-optimizer", help="its name in the candidate folders (default: --optimizer)")
    p.add_argument("--out", required=True, help="JSON file to write")
    args = p.parse_args(argv)
    reference = cells_by_run(Path(args.reference), args.optimizer)
    out = {
        "what": "validation score of the optimized program, candidate folders against the reference",
        "optimizer": args.optimizer,
        "reference": args.reference,
        "candidate_optimizer": args.candidate_optimizer or args.optimizer,
        "candidates": {
            c: compare(reference, cells_by_run(Path(c), args.candidate_optimizer or args.optimizer))
            for c in args.candidate
        },
        "provenance": collect().to_dict(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    for folder, result in out["candidates"].items():
        lo, hi = result["difference_ci95"]
        print(
            f"{folder}: {len(result['cells'])} cells, validation {100 * result['mean_reference']:.1f} -> "
            f"{100 * result['mean_candidate']:.1f} ({100 * result['mean_difference']:+.1f} "
            f"[{100 * lo:+.1f}, {100 * hi:+.1f}]; raised {result['raised']}, lowered {result['lowered']}, "
            f"sign p {result['sign_p']:.3f})"
        )
        for task, means in result["per_task"].items():
            print(f"  {task:14s} {100 * means['reference']:5.1f} -> {100 * means['candidate']:5.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
