"""Tables and charts of a LangProBe experiment, rebuilt from its stored cells.

``python -m promptopt.bench report --out runs/langprobe/quick`` writes, next to ``cells/``:

    report.md              per-task tables (baseline test, optimized test, lift with its paired 95% CI,
                           metric calls, LM calls, tokens, wall time) and the failed cells
    report.csv             one row per cell
    report.html            report.md as one page (charts inline), each cell linking to its run's page
    charts/summary.png     mean baseline vs optimized test score per optimizer, averaged over tasks
    charts/task_<t>.png    the same per task
    charts/curve_<t>.png   best validation score vs metric calls, one line per optimizer
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptopt.bench.aggregate import (
    CSV_COLUMNS,
    aggregate,
    by_optimizer,
    cell_row,
    optimizer_order,
    paired_test_scores,
)
from promptopt.bench.charts import charts
from promptopt.bench.head_to_head import head_to_head
from promptopt.bench.html_page import write_bench_page
from promptopt.bench.records import CellRecord
from promptopt.bench.report_provenance import cache_lines, provenance_lines
from promptopt.bench.store import Store


@dataclass
class ReportFiles:
    markdown: Path
    csv: Path
    charts: list[Path] = field(default_factory=list)
    html: Path | None = None


def _pct(x: float) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def _signed(x: float) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:+.1f}"


def _p(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return "<0.001" if x < 0.001 else f"{x:.3f}"


def _val(row: dict[str, Any]) -> str:
    """The seed's and the optimized program's validation scores: what the optimizer itself saw."""
    return f"{_pct(row['baseline_val'])} → {_pct(row['optimized_val'])}"


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


def _cell_problem(c: CellRecord) -> str | None:
    """Why a stored cell cannot be reported (its numbers do not pair up), or ``None``."""
    if not c.ok:
        return None
    try:
        paired_test_scores(c)
    except (KeyError, TypeError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def phase_lines(summary: list[dict[str, Any]]) -> list[str]:
    """Where each optimizer's metric calls and wall time went (mean per cell), for the optimizers
    that say."""
    lines: list[str] = []
    for column, title, note in (
        ("metric_calls_by_phase", "Where the metric calls went (mean per cell)", ""),
        (
            "seconds_by_phase",
            "Where the wall time went (mean seconds per cell)",
            "Each step's wall time under its phase; `proposal` is the LM writing new instructions. "
            "Steps run at once (parallel proposals) each count, so a row can add up to more than the "
            "cell's seconds; the rest of a serial run is the optimizer's own bookkeeping.",
        ),
    ):
        told = [s for s in summary if s.get(column)]
        if not told:
            continue
        phases = sorted({p for s in told for p in s[column]})
        lines += [f"### {title}", ""] + ([note, ""] if note else [])
        rows = [[s["optimizer"], *[_int(s[column].get(p, 0)) for p in phases]] for s in told]
        if column == "seconds_by_phase":
            rows = [[*row, _int(s["seconds"])] for row, s in zip(rows, told, strict=True)]
        heads = ["optimizer", *[p.replace("_", " ") for p in phases]]
        lines += _table(heads + (["seconds"] if column == "seconds_by_phase" else []), rows)
        lines.append("")
    return lines


def head_to_head_lines(cells: Sequence[CellRecord], focus: str = "gepa") -> list[str]:
    """``focus``'s mean lift minus each other optimizer's, example by example, with its interval."""
    names = sorted({c.config.optimizer for c in cells}, key=optimizer_order)
    if focus not in names:
        return []
    rows = []
    for other in names:
        h = None if other in (focus, "baseline") else head_to_head({"": cells}, focus, other)
        if h is not None:
            rows.append(
                [
                    other,
                    f"{_signed(h.difference)} [{_signed(h.ci[0])}, {_signed(h.ci[1])}]",
                    str(h.n_distinct),
                    f"{h.wins} / {h.losses}",
                    _p(h.sign_p),
                ]
            )
    if not rows:
        return []
    return [
        f"### Head to head: {focus} against each optimizer",
        "",
        f"{focus}'s mean lift minus the other's, from their lifts on the same test examples (each "
        "example's lift averaged over seeds), with a bootstrap interval that resamples examples "
        "within each task; won / lost counts the examples on which the lift was higher / lower "
        "(`python -m promptopt.bench summary` writes the same as JSON).",
        "",
        *_table(["versus", "difference [95% CI]", "n distinct", "won / lost", "sign p"], rows),
        "",
    ]


def markdown(
    out: Path,
    cells: Sequence[CellRecord],
    rows: Sequence[dict[str, Any]],
    charts: list[Path],
    unreadable: Sequence[str] = (),
) -> str:
    spec = _read_json(out / "spec.json") or {}
    ok = [c for c in cells if c.ok]
    failed = [c for c in cells if not c.ok]
    lines = [f"# LangProBe results{': ' + spec['name'] if spec.get('name') else ''}", ""]
    lms = sorted({c.config.lm for c in cells})
    refl = sorted({c.config.reflection_lm for c in cells if c.config.reflection_lm}) or ["none"]
    lines += [
        f"{len(cells)} cells ({len(ok)} finished, {len(failed)} failed) from `{out}/cells/`. "
        f"Task LM: {', '.join(f'`{x}`' for x in lms)}; reflection/proposer LM: "
        f"{', '.join(f'`{x}`' for x in refl)}.",
        "Scores are accuracy-like metric means on the test split, in percent. Lift is optimized minus "
        "baseline on the same test examples; its 95% CI is a percentile bootstrap clustered by test "
        "example over seeds (each distinct example's difference is averaged over the seeds that scored "
        "it, and the n distinct examples are resampled, so an example scored under several seeds counts "
        "once); per seed lists each seed's own lift, the spread one run may land in; validation is the "
        "seed's and the optimized program's score on the validation split (the data the optimizer "
        "chose on, so compare settings there and keep the test split for the final table); sign p is a "
        "two-sided sign test of the distinct examples the optimized program won "
        "against those it lost (ties dropped). Metric calls, LM calls (task and reflection/proposal, "
        "cached included), tokens and wall time are the optimizer's, averaged over seeds.",
        "",
    ]
    summary = by_optimizer(rows)
    if summary:
        lines += ["## Summary (mean over tasks)", ""]
        lines += _table(
            [
                "optimizer",
                "tasks",
                "baseline test",
                "optimized test",
                "lift",
                "validation",
                "metric calls",
                "wall time",
            ],
            [
                [
                    s["optimizer"],
                    str(s["tasks"]),
                    _pct(s["baseline_test"]),
                    _pct(s["optimized_test"]),
                    _signed(s["lift"]),
                    _val(s),
                    _int(s["metric_calls"]),
                    _time(s["seconds"]),
                ]
                for s in summary
            ],
        )
        lines += ["", "![summary](charts/summary.png)", ""]
        lines += phase_lines(summary)
        lines += head_to_head_lines(ok)
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
                "per seed",
                "validation",
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
                    " / ".join(_signed(x) for x in r["seed_lifts"]),
                    _val(r),
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
            kind, message = (c.error.type, c.error.message) if c.error else ("error", "")
            lines.append(f"- `{c.key}`: {kind}: {' '.join(message.split())[:300]}")
        lines.append("")
    if unreadable:
        lines += ["## Unreadable cells (left out)", ""]
        lines += [f"- {u}" for u in unreadable]
        lines += ["", "`bench langprobe` on this folder sets them aside and runs those cells again.", ""]
    lines += cache_lines(cells)
    lines += provenance_lines(cells)
    return "\n".join(lines)


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
            unreadable.append(f"`{c.key}.json`: {problem}")
    rows = aggregate(cells)
    for old in (root / "charts").glob("*.png"):  # charts of cells no longer stored
        old.unlink()
    made = charts(root, cells, rows)
    md = root / "report.md"
    md.parent.mkdir(parents=True, exist_ok=True)
    text = markdown(root, cells, rows, made, unreadable)
    md.write_text(text)
    csv_path = root / "report.csv"
    with open(csv_path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for c in cells:
            writer.writerow(cell_row(c))
    page = write_bench_page(root, text, cells)
    return ReportFiles(markdown=md, csv=csv_path, charts=made, html=page)
