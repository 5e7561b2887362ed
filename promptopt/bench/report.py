"""Tables and charts of a LangProBe experiment, rebuilt from its stored cells.

``python -m promptopt.bench report --out runs/langprobe/quick`` writes, next to ``cells/``:

    report.md              per-task tables (baseline test, optimized test, lift with its paired 95% CI,
                           metric calls, LM calls, tokens, wall time) and the failed cells
    report.csv             one row per cell
    charts/summary.png     mean baseline vs optimized test score per optimizer, averaged over tasks
    charts/task_<t>.png    the same per task
    charts/curve_<t>.png   best validation score vs metric calls, one line per optimizer
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from promptopt.bench.optimizers import OPTIMIZERS
from promptopt.bench.stats import pair_by_id, pooled_paired, sign_counts, sign_test
from promptopt.bench.store import Store

CSV_COLUMNS = [
    "key",
    "task",
    "program",
    "optimizer",
    "lm",
    "seed",
    "status",
    "n_test",
    "baseline_test",
    "optimized_test",
    "lift",
    "lift_ci_low",
    "lift_ci_high",
    "n_distinct",
    "wins",
    "losses",
    "ties",
    "sign_p",
    "baseline_val",
    "optimized_val",
    "metric_calls",
    "lm_calls",
    "tokens",
    "optimizer_seconds",
    "cell_seconds",
    "stop_reason",
    "error",
]


@dataclass
class ReportFiles:
    markdown: Path
    csv: Path
    charts: list[Path] = field(default_factory=list)


def _order(name: str) -> int:
    names = list(OPTIMIZERS)
    return names.index(name) if name in names else len(names)


def cell_row(c: dict[str, Any]) -> dict[str, Any]:
    cfg = c["config"]
    row: dict[str, Any] = {k: cfg.get(k) for k in ("task", "program", "optimizer", "lm", "seed")}
    row.update(key=c["key"], status=c["status"], cell_seconds=c.get("seconds"))
    if c["status"] == "ok":
        lift, b = c["lift"], c["budget"]
        ids, base, opt = _paired_test_scores(c)
        wins, losses, ties = sign_counts(np.subtract(opt, base))
        row.update(
            n_test=lift["n"],
            baseline_test=c["baseline"]["test"]["score"],
            optimized_test=c["optimized"]["test"]["score"],
            lift=lift["mean"],
            lift_ci_low=lift["ci"][0],
            lift_ci_high=lift["ci"][1],
            n_distinct=len(ids),
            wins=wins,
            losses=losses,
            ties=ties,
            sign_p=sign_test(wins, losses),
            baseline_val=c["validation"]["baseline"],
            optimized_val=c["validation"]["optimized"],
            metric_calls=b["metric_calls"],
            lm_calls=b["lm_calls"],
            tokens=b["tokens"],
            optimizer_seconds=b["seconds"],
            stop_reason=c["optimizer"]["stop_reason"],
            error="",
        )
    else:
        err = c.get("error") or {}
        row["error"] = f"{err.get('type', '')}: {err.get('message', '')}"
    return {k: row.get(k) for k in CSV_COLUMNS}


def _group_key(c: dict[str, Any]) -> tuple[str, str, str, str]:
    cfg = c["config"]
    return (cfg["task"], cfg["program"], cfg["optimizer"], cfg["lm"])


def _paired_test_scores(c: dict[str, Any]) -> tuple[list[Any], list[float], list[float]]:
    """A finished cell's test ``(ids, baseline scores, optimized scores)``, paired by example id."""
    base, opt = c["baseline"]["test"], c["optimized"]["test"]
    return pair_by_id(base["ids"], base["scores"], opt["ids"], opt["scores"], label=f"cell {c['key']}")


def aggregate(cells: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (task, program, optimizer, lm): means over seeds, and the lift pooled over seeds with
    :func:`~promptopt.bench.stats.pooled_paired`: its CI resamples distinct test examples (an example
    scored under several seeds is one cluster), its sign test counts distinct examples. ``n_test`` is
    the number of scored pairs over all seeds, ``n_distinct`` the number of distinct examples."""
    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for c in cells:
        if c["status"] == "ok":
            groups[_group_key(c)].append(c)
    rows = []
    for (task, program, optimizer, lm), cs in groups.items():
        cs = sorted(cs, key=lambda c: (c["config"]["seed"], c["key"]))
        paired = [_paired_test_scores(c) for c in cs]
        lift = pooled_paired([p[0] for p in paired], [p[1] for p in paired], [p[2] for p in paired])
        rows.append(
            {
                "task": task,
                "program": program,
                "optimizer": optimizer,
                "lm": lm,
                "seeds": len(cs),
                "n_test": lift["n"],
                "n_distinct": lift["n_distinct"],
                "baseline_test": float(np.mean([c["baseline"]["test"]["score"] for c in cs])),
                "optimized_test": float(np.mean([c["optimized"]["test"]["score"] for c in cs])),
                "lift": lift["mean"],
                "lift_ci": lift["ci"],
                "wins": lift["wins"],
                "losses": lift["losses"],
                "ties": lift["ties"],
                "sign_p": lift["sign_p"],
                "baseline_val": float(np.mean([c["validation"]["baseline"] for c in cs])),
                "optimized_val": float(np.mean([c["validation"]["optimized"] for c in cs])),
                "metric_calls": float(np.mean([c["budget"]["metric_calls"] for c in cs])),
                "lm_calls": float(np.mean([c["budget"]["lm_calls"] for c in cs])),
                "tokens": float(np.mean([c["budget"]["tokens"] for c in cs])),
                "seconds": float(np.mean([c["budget"]["seconds"] for c in cs])),
            }
        )
    rows.sort(key=lambda r: (r["task"], r["program"], r["lm"], _order(r["optimizer"])))
    return rows


def by_optimizer(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per optimizer: the mean over tasks of each task's mean (over programs and LMs)."""
    per: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        per[r["optimizer"]][r["task"]].append(r)
    out = []
    for opt in sorted(per, key=_order):
        tasks = per[opt]

        def mean_over_tasks(col: str, tasks: dict[str, list[dict[str, Any]]] = tasks) -> float:
            return float(np.mean([np.mean([r[col] for r in rs]) for rs in tasks.values()]))

        out.append(
            {
                "optimizer": opt,
                "tasks": len(tasks),
                "baseline_test": mean_over_tasks("baseline_test"),
                "optimized_test": mean_over_tasks("optimized_test"),
                "lift": mean_over_tasks("lift"),
                "metric_calls": mean_over_tasks("metric_calls"),
                "seconds": mean_over_tasks("seconds"),
            }
        )
    return out


# --- provenance and cache state ---------------------------------------------------------------
def _cache_share(c: dict[str, Any]) -> float | None:
    b = c.get("budget") or {}
    calls, uncached = b.get("lm_calls"), b.get("uncached_lm_calls")
    if not calls or uncached is None:
        return None
    return 1.0 - uncached / calls


def cache_lines(cells: Sequence[dict[str, Any]]) -> list[str]:
    """How warm each optimizer's cells ran: wall times compare only between cells that started from
    the same LM-cache state."""
    ok = [c for c in cells if c["status"] == "ok" and c["config"].get("optimizer") != "baseline"]
    if not ok:
        return []
    modes = sorted({c["config"].get("lm_cache", "shared") for c in ok})
    per: dict[str, list[float]] = defaultdict(list)
    for c in ok:
        share = _cache_share(c)
        if share is not None:
            per[c["config"]["optimizer"]].append(share)
    if modes == ["per_cell"]:
        state = (
            'Every cell ran with `lm_cache = "per_cell"`: each started from an empty LM cache of its '
            "own (the DSPy peers call the model without one), so the wall times compare."
        )
    else:
        state = (
            'Cells ran with the shared LM cache (`lm_cache = "shared"`): a cell answers from the cache '
            "what an earlier cell or run asked, so **wall times do not compare** between optimizers "
            'whose shares below differ; rerun with `lm_cache = "per_cell"` for a timing comparison.'
        )
    shares = ", ".join(
        f"{opt} {100 * float(np.mean(v)):.0f}%"
        for opt, v in sorted(per.items(), key=lambda kv: _order(kv[0]))
    )
    return ["## LM-cache state", "", state, f"LM calls answered from a cache, mean per cell: {shares}.", ""]


def _provenance_key(prov: dict[str, Any]) -> str:
    code = prov.get("code") or {}
    return json.dumps(
        {
            "commit": code.get("commit"),
            "dirty": code.get("dirty"),
            "source": code.get("source_sha256"),
            "packages": prov.get("packages"),
            "cpu": (prov.get("cpu") or {}).get("model"),
        },
        sort_keys=True,
    )


def provenance_lines(cells: Sequence[dict[str, Any]]) -> list[str]:
    """Which code, packages, machine, LMs and data made the cells, and which cells carry none."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    missing = []
    for c in cells:
        if isinstance(c.get("provenance"), dict):
            groups[_provenance_key(c["provenance"])].append(c)
        else:
            missing.append(c["key"])
    lines = ["## Provenance", ""]
    if len(groups) > 1:
        lines += [f"**The cells come from {len(groups)} different code versions or environments.**", ""]
    for members in groups.values():
        prov = members[0]["provenance"]
        code, cpu = prov.get("code") or {}, prov.get("cpu") or {}
        commit = code.get("commit") or "no git checkout"
        dirty = " with uncommitted changes" if code.get("dirty") else ""
        packages = ", ".join(f"{k} {v}" for k, v in (prov.get("packages") or {}).items() if v)
        lms: dict[str, str] = {}
        data: dict[str, str] = {}
        for c in members:
            for role, ident in (c["provenance"].get("lms") or {}).items():
                sha = f" (sha256 {ident['sha256'][:16]}…)" if ident.get("sha256") else ""
                lms[f"`{ident.get('model')}`{sha}"] = role
            for task, ident in (c["provenance"].get("data") or {}).items():
                data[task] = (ident.get("files_sha256") or "from the hub")[:16]
        lines += [
            f"- {len(members)} cells: promptopt {code.get('version')} at commit `{commit}`{dirty}, "
            f"sources sha256 `{str(code.get('source_sha256'))[:16]}…`; {packages}; Python "
            f"{prov.get('python')}; {cpu.get('model')} ({cpu.get('cores')} cores).",
            f"  LMs: {', '.join(sorted(lms))}. Data files sha256: "
            + ", ".join(f"{t} `{h}…`" for t, h in sorted(data.items()))
            + ".",
            f"  Command: `{prov.get('command')}`.",
        ]
    if missing:
        lines.append(
            f"- {len(missing)} cells carry no provenance (stored by older code; `bench langprobe` on the "
            "same folder reruns them): "
            + ", ".join(f"`{k}`" for k in missing[:8])
            + (" …" if len(missing) > 8 else "")
        )
    lines.append("")
    return lines


# --- text ---------------------------------------------------------------------------------
def _pct(x: float) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def _signed(x: float) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:+.1f}"


def _p(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return "<0.001" if x < 0.001 else f"{x:.3f}"


def _int(x: float) -> str:
    return f"{x:,.0f}"


def _time(s: float) -> str:
    return f"{s:.0f}s" if s < 120 else f"{s / 60:.1f}min"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(" --- " for _ in header) + "|",
        *["| " + " | ".join(r) + " |" for r in rows],
    ]


def _cell_problem(c: dict[str, Any]) -> str | None:
    """Why a stored cell cannot be reported (its numbers do not pair up), or ``None``."""
    if c["status"] != "ok":
        return None
    try:
        _paired_test_scores(c)
    except (KeyError, TypeError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def markdown(
    out: Path,
    cells: Sequence[dict[str, Any]],
    rows: Sequence[dict[str, Any]],
    charts: list[Path],
    unreadable: Sequence[str] = (),
) -> str:
    spec = _read_json(out / "spec.json") or {}
    ok = [c for c in cells if c["status"] == "ok"]
    failed = [c for c in cells if c["status"] != "ok"]
    lines = [f"# LangProBe results{': ' + spec['name'] if spec.get('name') else ''}", ""]
    lms = sorted({c["config"]["lm"] for c in cells})
    refl = sorted({c["config"]["reflection_lm"] for c in cells if c["config"].get("reflection_lm")}) or [
        "none"
    ]
    lines += [
        f"{len(cells)} cells ({len(ok)} finished, {len(failed)} failed) from `{out}/cells/`. "
        f"Task LM: {', '.join(f'`{x}`' for x in lms)}; reflection/proposer LM: "
        f"{', '.join(f'`{x}`' for x in refl)}.",
        "Scores are accuracy-like metric means on the test split, in percent. Lift is optimized minus "
        "baseline on the same test examples; its 95% CI is a percentile bootstrap clustered by test "
        "example over seeds (each distinct example's difference is averaged over the seeds that scored "
        "it, and the n distinct examples are resampled, so an example scored under several seeds counts "
        "once), and sign p is a two-sided sign test of the distinct examples the optimized program won "
        "against those it lost (ties dropped). Metric calls, LM calls (task and reflection/proposal, "
        "cached included), tokens and wall time are the optimizer's, averaged over seeds.",
        "",
    ]
    summary = by_optimizer(rows)
    if summary:
        lines += ["## Summary (mean over tasks)", ""]
        lines += _table(
            ["optimizer", "tasks", "baseline test", "optimized test", "lift", "metric calls", "wall time"],
            [
                [
                    s["optimizer"],
                    str(s["tasks"]),
                    _pct(s["baseline_test"]),
                    _pct(s["optimized_test"]),
                    _signed(s["lift"]),
                    _int(s["metric_calls"]),
                    _time(s["seconds"]),
                ]
                for s in summary
            ],
        )
        lines += ["", "![summary](charts/summary.png)", ""]
    for task in sorted({r["task"] for r in rows}):
        trs = [r for r in rows if r["task"] == task]
        lines += [f"## {task}", ""]
        lines += _table(
            [
                "program",
                "optimizer",
                "lm",
                "seeds",
                "n test",
                "baseline test",
                "optimized test",
                "lift [95% CI]",
                "n distinct",
                "sign p",
                "metric calls",
                "LM calls",
                "tokens",
                "wall time",
            ],
            [
                [
                    r["program"],
                    r["optimizer"],
                    f"`{r['lm']}`",
                    str(r["seeds"]),
                    str(r["n_test"]),
                    _pct(r["baseline_test"]),
                    _pct(r["optimized_test"]),
                    f"{_signed(r['lift'])} [{_signed(r['lift_ci'][0])}, {_signed(r['lift_ci'][1])}]",
                    str(r["n_distinct"]),
                    _p(r["sign_p"]),
                    _int(r["metric_calls"]),
                    _int(r["lm_calls"]),
                    _int(r["tokens"]),
                    _time(r["seconds"]),
                ]
                for r in trs
            ],
        )
        lines.append("")
        for name in (f"task_{task}.png", f"curve_{task}.png"):
            if any(p.name == name for p in charts):
                lines.append(f"![{name[:-4]}](charts/{name})")
        lines.append("")
    if failed:
        lines += ["## Failed cells", ""]
        for c in failed:
            err = c.get("error") or {}
            msg = " ".join(str(err.get("message", "")).split())[:300]
            lines.append(f"- `{c['key']}`: {err.get('type', 'error')}: {msg}")
        lines.append("")
    if unreadable:
        lines += ["## Unreadable cells (left out)", ""]
        lines += [f"- {u}" for u in unreadable]
        lines += ["", "`bench langprobe` on this folder sets them aside and runs those cells again.", ""]
    lines += cache_lines(cells)
    lines += provenance_lines(cells)
    return "\n".join(lines)


# --- charts -------------------------------------------------------------------------------
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


def _curves(path: Path, task: str, cells: list[dict[str, Any]]) -> Path | None:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    programs = {c["config"]["program"] for c in cells}
    lms = {c["config"]["lm"] for c in cells}
    for c in cells:
        label = c["config"]["optimizer"]
        if len(programs) > 1:
            label += f" / {c['config']['program']}"
        if len(lms) > 1:
            label += f" / {c['config']['lm']}"
        groups[label].append(c)
    fig = _figure(6.5, 4.0)
    ax = fig.add_subplot()
    drawn = 0
    for label in sorted(groups, key=lambda s: (_order(s.split(" / ")[0]), s)):
        cs = groups[label]
        if label.split(" / ")[0] == "baseline":
            y = 100 * float(np.mean([c["validation"]["baseline"] for c in cs]))
            ax.axhline(y, linestyle="--", color="#9aa5b1", label=f"{label} (seed program)")
            drawn += 1
            continue
        curves = []
        for c in cs:
            pts = [(float(x), float(y)) for x, y in c["learning_curve"]]
            end = (float(c["budget"]["metric_calls"]), float(c["validation"]["optimized"]))
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


def charts(out: Path, cells: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]]) -> list[Path]:
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
    ok = [c for c in cells if c["status"] == "ok"]
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
        curve = _curves(folder / f"curve_{task}.png", task, [c for c in ok if c["config"]["task"] == task])
        if curve is not None:
            made.append(curve)
    return made


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def build_report(out: str | Path) -> ReportFiles:
    """Rebuild report.md, report.csv and charts/ from ``<out>/cells``."""
    import csv

    root = Path(out)
    store = Store(root)
    stored = store.cells()
    cells, unreadable = [], [f"`{e.path.name}`: {e.reason}" for e in store.unreadable]
    for c in stored:
        problem = _cell_problem(c)
        if problem is None:
            cells.append(c)
        else:
            unreadable.append(f"`{c['key']}.json`: {problem}")
    rows = aggregate(cells)
    for old in (root / "charts").glob("*.png"):  # charts of cells no longer stored
        old.unlink()
    made = charts(root, cells, rows)
    md = root / "report.md"
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text(markdown(root, cells, rows, made, unreadable))
    csv_path = root / "report.csv"
    with open(csv_path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for c in cells:
            writer.writerow(cell_row(c))
    return ReportFiles(markdown=md, csv=csv_path, charts=made)
