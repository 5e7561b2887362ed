"""Pictures of an optimization result: the candidate lineage with the Pareto front, and the learning curve.

Only matplotlib's Agg backend is used, so this works on machines without a screen. ``draw_lineage`` and
``draw_curve`` draw on a given axis (the run page renders each as its own SVG); ``plot_result`` puts
both side by side in a PNG.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from promptopt.optimizers.result import OptimizationResult


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw_lineage(ax: Any, result: OptimizationResult) -> None:
    """x: metric calls when found, y: validation score, an edge from each parent to its child; the
    Pareto front ringed, the best starred."""
    by_id = {c.id: c for c in result.candidates}
    front = set(result.pareto_front)
    for cand in result.candidates:
        for parent in cand.parents:
            if parent in by_id:
                p = by_id[parent]
                style = "--" if cand.origin == "merge" else "-"
                ax.plot(
                    [p.discovered_at, cand.discovered_at],
                    [p.val_score, cand.val_score],
                    style,
                    color="0.6",
                    lw=1,
                    zorder=1,
                )
    colours = {"seed": "tab:gray", "merge": "tab:purple"}
    for cand in result.candidates:
        kind = cand.origin.split(":")[0]
        colour = colours.get(kind, "tab:orange" if cand.origin.endswith("demos") else "tab:blue")
        ax.scatter(cand.discovered_at, cand.val_score, s=60, color=colour, zorder=2)
        if cand.id in front:
            ax.scatter(cand.discovered_at, cand.val_score, s=180, facecolors="none", edgecolors="k", zorder=3)
        ax.annotate(
            str(cand.id), (cand.discovered_at, cand.val_score), xytext=(5, 4), textcoords="offset points"
        )
    if result.candidates:
        best = result.best_candidate
        ax.scatter(
            best.discovered_at, best.val_score, marker="*", s=320, color="gold", edgecolors="k", zorder=4
        )
    ax.set_xlabel("metric calls when found")
    ax.set_ylabel("validation score")
    ax.set_title("lineage (ringed: Pareto front, star: best)")
    ax.grid(alpha=0.3)


def draw_curve(ax: Any, result: OptimizationResult) -> None:
    """The best validation score against metric calls, held to the end of the budget spent."""
    if result.learning_curve:
        xs = [x for x, _ in result.learning_curve] + [result.budget.metric_calls]
        ys = [y for _, y in result.learning_curve] + [result.learning_curve[-1][1]]
        ax.step(xs, ys, where="post", color="tab:blue")
        ax.scatter(xs[:-1], ys[:-1], color="tab:blue", s=20)
    ax.set_xlabel("metric calls")
    ax.set_ylabel("best validation score")
    ax.set_title("learning curve")
    ax.grid(alpha=0.3)


def plot_result(result: OptimizationResult, path: str | os.PathLike[str], title: str | None = None) -> Path:
    """Write a two-panel PNG: the lineage and the learning curve."""
    plt = _pyplot()
    fig, (ax, curve) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [3, 2]})
    draw_lineage(ax, result)
    draw_curve(curve, result)
    fig.suptitle(title or f"{result.optimizer}: {result.summary().split(';')[0]}", fontsize=10)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def svg_figure(draw: Any, result: OptimizationResult, size: tuple[float, float] = (7.5, 4.2)) -> str:
    """One panel drawn by ``draw(ax, result)``, as an inline ``<svg>`` element (text kept as text).

    A bare :class:`~matplotlib.figure.Figure`, not pyplot: no backend is switched (a notebook keeps
    its own) and no global figure state is shared between threads."""
    import io

    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context({"svg.fonttype": "none"}):
        fig = Figure(figsize=size)
        draw(fig.subplots(), result)
        fig.tight_layout()
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})  # the same run, the same page
    text = buf.getvalue()
    return text[text.index("<svg") :]
