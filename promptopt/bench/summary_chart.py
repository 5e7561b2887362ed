"""The chart of a comparison summary (:mod:`promptopt.bench.comparison_summary`).

Three panels drawn from the summary alone, so the chart can be redrawn from a committed
``summary.json`` without its cells: each optimizer's mean lift per configuration, its wall time
per cell, and the focus optimizer's lift minus each other optimizer's with the interval of the
difference (a bar whose interval crosses zero is not a win).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SummarySeries:
    """What the chart plots, in the order it plots it."""

    optimizers: list[str]
    # configuration name -> mean lift (points) per optimizer, None where it has no cells there
    lift_by_configuration: dict[str, list[float | None]]
    wall_s: list[float]
    focus: str
    others: list[str]
    differences: list[float]
    intervals: list[tuple[float, float]]


def summary_series(summary: Mapping[str, Any]) -> SummarySeries:
    """The numbers of ``summary`` (the dict ``comparison_summary`` returns or its JSON file holds)."""
    try:
        overall = summary["optimizers"]
        focus = summary["focus"]
        head = summary["head_to_head"]
    except KeyError as missing:
        raise ValueError(
            f"Not a comparison summary: it has no {missing} entry (write one with "
            "`python -m promptopt.bench summary FOLDER... --json FILE`)."
        ) from None
    # The seed program's own row: its lift is zero by definition and it has no optimizer wall time.
    names = [n for n in overall if n != "baseline"]
    configurations = summary.get("configurations") or {"all": {"optimizers": overall}}
    lifts = {
        config: [
            (numbers["optimizers"][n]["mean_lift"] if n in numbers["optimizers"] else None) for n in names
        ]
        for config, numbers in configurations.items()
    }
    others = list(head)
    return SummarySeries(
        optimizers=names,
        lift_by_configuration=lifts,
        wall_s=[overall[n]["wall_s"] for n in names],
        focus=focus,
        others=others,
        differences=[head[o]["difference"] for o in others],
        intervals=[(head[o]["ci"][0], head[o]["ci"][1]) for o in others],
    )


def summary_chart(summary: Mapping[str, Any], path: str | Path) -> Path:
    """Draw ``summary`` as a PNG at ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    series = summary_series(summary)
    n = len(series.optimizers)
    fig = Figure(figsize=(max(12.0, 2.2 * n), 4.4), dpi=110)
    FigureCanvasAgg(fig)
    lift_ax, wall_ax, diff_ax = fig.subplots(1, 3)

    x = np.arange(n)
    configs = list(series.lift_by_configuration)
    width = 0.8 / len(configs)
    for i, config in enumerate(configs):
        heights = [np.nan if v is None else v for v in series.lift_by_configuration[config]]
        bars = lift_ax.bar(x - 0.4 + width * (i + 0.5), heights, width, label=config)
        lift_ax.bar_label(bars, fmt="%+.1f", fontsize=7, padding=2)
    lift_ax.axhline(0, color="black", linewidth=0.8)
    lift_ax.set_xticks(x, series.optimizers, rotation=30, ha="right")
    lift_ax.set_ylabel("mean lift over the seed program (points)")
    lift_ax.set_title("Mean test lift")
    if len(configs) > 1:
        lift_ax.legend(fontsize=7)

    bars = wall_ax.bar(x, series.wall_s, color="#7a8b99")
    wall_ax.bar_label(bars, fmt="%.0f", fontsize=7, padding=2)
    wall_ax.set_xticks(x, series.optimizers, rotation=30, ha="right")
    wall_ax.set_ylabel("seconds per cell")
    wall_ax.set_title("Wall time")

    y = np.arange(len(series.others))
    # Clamped: matplotlib refuses negative error lengths, which rounding can make of an interval
    # that only touches its difference.
    lows = [max(0.0, d - lo) for d, (lo, _) in zip(series.differences, series.intervals, strict=True)]
    highs = [max(0.0, hi - d) for d, (_, hi) in zip(series.differences, series.intervals, strict=True)]
    colors = ["#2f6db5" if lo > 0 else "#c0392b" if hi < 0 else "#9aa5b1" for lo, hi in series.intervals]
    diff_ax.barh(y, series.differences, xerr=[lows, highs], color=colors, capsize=3)
    diff_ax.axvline(0, color="black", linewidth=0.8)
    diff_ax.set_yticks(y, series.others)
    diff_ax.invert_yaxis()
    diff_ax.set_xlabel("difference in mean lift (points, 95% interval)")
    diff_ax.set_title(f"{series.focus} minus each optimizer")
    if not series.others:
        diff_ax.text(
            0.5,
            0.5,
            f"no head to head: {series.focus} has no cells here",
            ha="center",
            va="center",
            transform=diff_ax.transAxes,
        )

    for ax in (lift_ax, wall_ax, diff_ax):
        ax.grid(axis="x" if ax is diff_ax else "y", alpha=0.3)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out
