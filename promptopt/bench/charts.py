"""The report's charts: test scores before and after per task, and learning curves."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from promptopt.bench.aggregate import by_optimizer, optimizer_order
from promptopt.bench.records import CellNumbers, CellRecord


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _bars(path: Path, labels: list[str], base: list[float], opt: list[float], title: str) -> Path:
    fig = _figure(max(5.0, 1.3 * len(labels) + 2), 4.0)
    ax = fig.add_subplot()
    x = np.arange(len(labels))
    w = 0.38
    b1 = ax.bar(x - w / 2, [100 * v for v in base], w, label="baseline (seed program)", color="#9aa5b1")
    b2 = ax.bar(x + w / 2, [100 * v for v in opt], w, label="optimized", color="#2f6db5")
    for bars in (b1, b2):
        ax.bar_label(bars, fmt="%.0f", fontsize=8, padding=2)
    ax.set_xticks(
        x, labels, rotation=20 if len(labels) > 4 else 0, ha="right" if len(labels) > 4 else "center"
    )
    ax.set_ylabel("test score (%)")
    ax.set_ylim(0, 105)
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def _step_mean(curves: list[list[tuple[float, float]]]) -> tuple[list[float], list[float]]:
    """The mean over seeds of step functions (best score so far), on the union of their x values."""
    xs = sorted({x for c in curves for x, _ in c})
    ys = []
    for x in xs:
        vals = []
        for c in curves:
            seen = [y for cx, y in c if cx <= x]
            if seen:
                vals.append(seen[-1])
        ys.append(float(np.mean(vals)))
    return xs, ys


def _curves(path: Path, task: str, cells: list[CellRecord]) -> Path | None:
    groups: dict[str, list[CellNumbers]] = defaultdict(list)
    programs = {c.config.program for c in cells}
    lms = {c.config.lm for c in cells}
    for c in cells:
        label = c.config.optimizer
        if len(programs) > 1:
            label += f" / {c.config.program}"
        if len(lms) > 1:
            label += f" / {c.config.lm}"
        groups[label].append(c.finished())
    fig = _figure(6.5, 4.0)
    ax = fig.add_subplot()
    drawn = 0
    for label in sorted(groups, key=lambda s: (optimizer_order(s.split(" / ")[0]), s)):
        cs = groups[label]
        if label.split(" / ")[0] == "baseline":
            y = 100 * float(np.mean([n.baseline_val for n in cs]))
            ax.axhline(y, linestyle="--", color="#9aa5b1", label=f"{label} (seed program)")
            drawn += 1
            continue
        curves = []
        for n in cs:
            pts = [(float(x), float(y)) for x, y in n.learning_curve]
            end = (float(n.spending.metric_calls), float(n.optimized_val))
            if not pts:
                pts = [end]
            elif end[0] > pts[-1][0]:
                pts.append((end[0], pts[-1][1]))
            curves.append(pts)
        xs, ys = _step_mean(curves)
        if len(xs) == 1:
            ax.plot(xs, [100 * y for y in ys], marker="o", linestyle="none", label=label)
        else:
            ax.step(xs, [100 * y for y in ys], where="post", marker=".", label=label)
        drawn += 1
    if not drawn:
        return None
    ax.set_xlabel("metric calls")
    ax.set_ylabel("best validation score (%)")
    ax.set_title(f"{task}: learning curves")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def charts(out: Path, cells: Sequence[CellRecord], rows: Sequence[dict[str, Any]]) -> list[Path]:
    folder = out / "charts"
    made: list[Path] = []
    summary = by_optimizer(rows)
    if not summary:
        return made
    n_tasks = len({r["task"] for r in rows})
    made.append(
        _bars(
            folder / "summary.png",
            [s["optimizer"] for s in summary],
            [s["baseline_test"] for s in summary],
            [s["optimized_test"] for s in summary],
            f"Mean test score over {n_tasks} task{'s' if n_tasks != 1 else ''}",
        )
    )
    ok = [c for c in cells if c.ok]
    for task in sorted({r["task"] for r in rows}):
        trs = [r for r in rows if r["task"] == task]
        multi = len({(r["program"], r["lm"]) for r in trs}) > 1
        labels = [r["optimizer"] + (f"\n{r['program']} / {r['lm']}" if multi else "") for r in trs]
        made.append(
            _bars(
                folder / f"task_{task}.png",
                labels,
                [r["baseline_test"] for r in trs],
                [r["optimized_test"] for r in trs],
                f"{task}: test score",
            )
        )
        curve = _curves(folder / f"curve_{task}.png", task, [c for c in ok if c.config.task == task])
        if curve is not None:
            made.append(curve)
    return made
