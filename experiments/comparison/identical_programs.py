"""How far apart two test evaluations of the same program land: the comparison's noise floor.

Cells of the recorded comparison sometimes end with the same program (GEPA keeping
BootstrapFewShot's demo set and instruction, two budgets finding the same candidate). Each cell
evaluates its program on the test split from an empty LM cache of its own, so such pairs show how
much the local server's answers move between runs of identical prompts (a reused prompt prefix and
the order requests arrive in change the arithmetic, and a near tie between two answer tokens can
flip). Every pair of finished cells, across the given folders, with the same task, program, LM,
seed, test examples and adopted components is compared example by example.

    python experiments/comparison/identical_programs.py results/comparison/r0.5b-b60 \
        results/comparison/r1.5b-b60 results/comparison/r0.5b-b150 \
        --out results/comparison/identical-programs.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from promptopt.bench.records import CellRecord  # noqa: E402
from promptopt.bench.store import Store  # noqa: E402
from promptopt.provenance import collect  # noqa: E402


def finished_cells(folders: list[Path]) -> list[tuple[str, CellRecord]]:
    """Every finished optimizer cell of ``folders`` (a copied cell once: where it was first stored)."""
    out = []
    for folder in folders:
        store = Store(folder)
        if store.unreadable:
            raise SystemExit(f"{folder}: unreadable cells: {[str(e) for e in store.unreadable]}")
        for cell in store.cells():
            if cell.ok and cell.copied_from is None and cell.config.optimizer != "baseline":
                out.append((str(folder), cell))
    return out


def program_key(cell: CellRecord) -> tuple[Any, ...]:
    cfg, numbers = cell.config, cell.finished()
    return (
        cfg.task,
        cfg.program,
        cfg.lm,
        cfg.seed,
        numbers.optimized_test.ids,
        json.dumps(numbers.components, sort_keys=True),
    )


def demo_count(components: dict[str, Any]) -> int:
    return sum(len(v) for k, v in components.items() if k.endswith("demos") and isinstance(v, list))


def groups(cells: list[tuple[str, CellRecord]]) -> list[dict[str, Any]]:
    """One row per program that two or more cells adopted: each cell's test score and the test
    examples on which the cells' answers did not all score the same."""
    by_program: dict[tuple[Any, ...], list[tuple[str, CellRecord]]] = defaultdict(list)
    for folder, cell in cells:
        by_program[program_key(cell)].append((folder, cell))
    rows = []
    for group in by_program.values():
        if len(group) < 2:
            continue
        first = group[0][1]
        tests = [cell.finished().optimized_test for _, cell in group]
        differ = [i for i in range(len(tests[0].scores)) if len({t.scores[i] for t in tests}) > 1]
        components = first.finished().components
        rows.append(
            {
                "task": first.config.task,
                "seed": first.config.seed,
                "demos": demo_count(components),
                "cells": {f"{folder}/{cell.key}": t.score for (folder, cell), t in zip(group, tests)},
                "n_test": len(tests[0].scores),
                "score_range": max(t.score for t in tests) - min(t.score for t in tests),
                "examples_differing": len(differ),
                "differing_ids": [tests[0].ids[i] for i in differ],
                "commits": sorted(
                    {c.provenance.code.commit or "unknown" for _, c in group if c.provenance is not None}
                ),
            }
        )
    return sorted(rows, key=lambda r: (r["task"], r["seed"], -len(r["cells"])))


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "programs": len(rows),
        "evaluations": sum(len(r["cells"]) for r in rows),
        "programs_with_a_difference": sum(r["examples_differing"] > 0 for r in rows),
        "examples_compared": sum(r["n_test"] for r in rows),
        "examples_differing": sum(r["examples_differing"] for r in rows),
        "mean_score_range": sum(r["score_range"] for r in rows) / len(rows) if rows else 0.0,
        "max_score_range": max((r["score_range"] for r in rows), default=0.0),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="+", help="bench folders (results/comparison/<config>)")
    p.add_argument("--out", required=True, help="JSON file to write")
    args = p.parse_args(argv)
    rows = groups(finished_cells([Path(f) for f in args.folders]))
    if not rows:
        raise SystemExit("No two finished cells of these folders adopted the same program.")
    summary = {
        "all": summarize(rows),
        "with_demos": summarize([r for r in rows if r["demos"]]),
        "without_demos": summarize([r for r in rows if not r["demos"]]),
    }
    out = {
        "what": "test scores of cells that adopted the same program, example by example",
        "folders": args.folders,
        "summary": summary,
        "programs": rows,
        "provenance": collect().to_dict(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    for name, part in summary.items():
        print(
            f"{name}: {part['programs']} programs adopted by two or more cells ({part['evaluations']} "
            f"evaluations); {part['programs_with_a_difference']} scored differently on "
            f"{part['examples_differing']} of {part['examples_compared']} test examples; score range "
            f"mean {100 * part['mean_score_range']:.2f}, max {100 * part['max_score_range']:.1f} points"
        )
    for r in rows:
        if r["examples_differing"]:
            scores = ", ".join(
                f"{Path(k).parent.name}:{k.split('__')[2]} {100 * v:.0f}" for k, v in r["cells"].items()
            )
            print(f"  {r['task']} s{r['seed']} ({r['demos']} demos): {scores}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
