"""One JSON file that sums up a comparison of optimizers over one or more LangProBe run folders.

Each folder is a *configuration* (one reflection LM, one budget, ...). Per optimizer the file holds
its mean lift in points (the mean over tasks of each task's lift pooled over seeds, configurations of
a task averaged first), its mean wall time and metric calls per cell, and where both went by phase;
``head_to_head`` holds the focus optimizer's mean lift minus each other optimizer's with a stratified
bootstrap interval (:mod:`promptopt.bench.head_to_head`); ``configurations`` repeats all of it per
folder; ``provenance`` says which code versions, packages, LMs, data files and commands made the cells.

    python -m promptopt.bench summary runs/langprobe/a runs/langprobe/b --json results/comparison/summary.json
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from promptopt.bench.aggregate import aggregate, by_optimizer, optimizer_order
from promptopt.bench.head_to_head import head_to_head
from promptopt.bench.records import CellRecord
from promptopt.bench.store import Store

FORMAT = 1


def _points(x: float) -> float:
    return round(100.0 * x, 2)


def optimizer_numbers(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per optimizer: mean lift (points), wall seconds and metric calls per cell, seconds per metric
    call, tasks, and both by phase."""
    return {
        s["optimizer"]: {
            "mean_lift": _points(s["lift"]),
            "wall_s": round(s["seconds"], 1),
            "metric_calls": round(s["metric_calls"], 1),
            # Speed at equal work: a run that stops early spends fewer seconds, not faster ones.
            "s_per_metric_call": round(s["seconds"] / s["metric_calls"], 2) if s["metric_calls"] else None,
            "tasks": s["tasks"],
            "baseline_test": _points(s["baseline_test"]),
            "optimized_test": _points(s["optimized_test"]),
            "metric_calls_by_phase": {k: round(v, 1) for k, v in s["metric_calls_by_phase"].items()},
            "seconds_by_phase": {k: round(v, 1) for k, v in s["seconds_by_phase"].items()},
        }
        for s in by_optimizer(rows)
    }


def differences(
    configurations: Mapping[str, Sequence[CellRecord]], focus: str, others: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """``focus``'s mean lift minus each of ``others``', in points, with interval and sign test."""
    out = {}
    for other in others:
        h = head_to_head(configurations, focus, other)
        if h is not None:
            d = h.to_dict()
            out[other] = {
                **d,
                "difference": _points(h.difference),
                "ci": [_points(h.ci[0]), _points(h.ci[1])],
            }
    return out


def provenance_summary(cells: Sequence[CellRecord]) -> dict[str, Any]:
    """The distinct code versions (with how many cells each made), packages, LMs, data and commands."""
    codes: dict[tuple[Any, ...], dict[str, Any]] = {}
    packages: dict[str, set[str]] = {}
    lms: dict[str, dict[str, Any]] = {}
    data: dict[str, str] = {}
    commands: set[str] = set()
    cpus: set[str] = set()
    missing = 0
    for c in cells:
        prov = c.provenance
        if prov is None:
            missing += 1
            continue
        code = prov.code
        key = (code.commit, code.dirty, code.source_sha256)
        entry = codes.setdefault(key, {**code.to_dict(), "cells": 0})
        entry["cells"] += 1
        for name, version in prov.packages.items():
            if version:
                packages.setdefault(name, set()).add(str(version))
        for ident in prov.lms.values():
            lms[str(ident.get("model"))] = dict(ident)
        for task, ident in prov.data.items():
            data[task] = str(ident.get("files_sha256") or "from the hub")
        if prov.command:
            commands.add(prov.command)
        if prov.cpu.get("model"):
            cpus.add(f"{prov.cpu.get('model')} ({prov.cpu.get('cores')} cores)")
    return {
        "code": list(codes.values()),
        "packages": {k: sorted(v) for k, v in sorted(packages.items())},
        "lms": dict(sorted(lms.items())),
        "data_files_sha256": dict(sorted(data.items())),
        "commands": sorted(commands),
        "cpu": sorted(cpus),
        "cells_without_provenance": missing,
    }


def comparison_summary(folders: Sequence[str | Path], *, focus: str = "gepa") -> dict[str, Any]:
    """The summary of the finished cells in ``folders`` (named by their folder names)."""
    configurations: dict[str, list[CellRecord]] = {}
    for folder in folders:
        path = Path(folder)
        name = path.name
        if name in configurations:
            raise ValueError(f"Two run folders are named {name!r}; each configuration needs its own name.")
        cells = [c for c in Store(path).cells() if c.ok]
        if not cells:
            raise ValueError(f"{path} holds no finished cells (looked in {path / 'cells'}).")
        configurations[name] = cells
    every = [c for cells in configurations.values() for c in cells]
    names = sorted({c.config.optimizer for c in every}, key=optimizer_order)
    others = [n for n in names if n not in (focus, "baseline")]
    rows = [row for cells in configurations.values() for row in aggregate(cells)]
    summary: dict[str, Any] = {
        "format": FORMAT,
        "focus": focus,
        "optimizers": optimizer_numbers(rows),
        "head_to_head": differences(configurations, focus, others) if focus in names else {},
    }
    if len(configurations) > 1:
        summary["configurations"] = {
            name: {
                "folder": str(Path(folder)),
                "optimizers": optimizer_numbers(aggregate(cells)),
                "head_to_head": differences({name: cells}, focus, others) if focus in names else {},
            }
            for (name, cells), folder in zip(configurations.items(), folders, strict=True)
        }
    summary["provenance"] = provenance_summary(every)
    return summary


def summary_lines(summary: Mapping[str, Any]) -> list[str]:
    """The summary as a text table: mean lift, wall time and metric calls, then the head-to-head rows."""
    lines = [f"{'optimizer':<22} {'mean lift':>9} {'wall s':>8} {'metric calls':>12} {'s/call':>7}"]
    for name, n in summary["optimizers"].items():
        rate = "" if n["s_per_metric_call"] is None else f"{n['s_per_metric_call']:.2f}"
        lines.append(
            f"{name:<22} {n['mean_lift']:>+9.1f} {n['wall_s']:>8.0f} {n['metric_calls']:>12.0f} {rate:>7}"
        )
    focus = summary["focus"]
    for other, h in summary["head_to_head"].items():
        lines.append(
            f"{focus} - {other}: {h['difference']:+.1f} points [{h['ci'][0]:+.1f}, {h['ci'][1]:+.1f}], "
            f"{h['wins']} examples won, {h['losses']} lost (sign p {h['sign_p']:.3f})"
        )
    return lines
