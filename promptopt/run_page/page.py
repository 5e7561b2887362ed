"""The run page: one HTML file with everything inline (styles, SVG charts), no script.

Every text from the run (prompts, example ids, reasons) is escaped, so a prompt holding markup shows
as text and cannot change the page.
"""

from __future__ import annotations

import difflib
import html
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

from promptopt.optimizers.plots import draw_curve, draw_lineage, svg_figure
from promptopt.optimizers.result import Candidate
from promptopt.run_page.view import RunView, component_text, load_run_view

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1200px; padding: 1em 2em; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ddd; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f5f5f5; }
pre { white-space: pre-wrap; background: #fafafa; border: 1px solid #eee; padding: .5em; margin: .3em 0; }
.charts { display: flex; flex-wrap: wrap; gap: 1em; } .charts svg { max-width: 100%; height: auto; }
.best { background: #fff6d5; } .front { font-weight: bold; }
.matrix td { width: 1.2em; height: 1.2em; padding: 0; text-align: center; font-size: 11px; }
.matrix th.example { writing-mode: vertical-rl; font-weight: normal; font-size: 11px; }
table.diff { font-family: monospace; font-size: 12px; width: 100%; }
table.diff td { white-space: pre-wrap; border: none; } .diff_add { background: #d9f7d9; }
.diff_chg { background: #fff1b8; } .diff_sub { background: #ffd9d9; } .diff_next { display: none; }
.muted { color: #777; } .rejected { color: #a33; } .accepted { color: #2a6; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _pct(x: float) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "") -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _score_colour(score: float | None) -> str:
    if score is None or (isinstance(score, float) and math.isnan(score)):
        return "#eee"
    s = max(0.0, min(1.0, float(score)))
    return f"hsl({round(120 * s)}, 65%, 78%)"


def _candidates_table(view: RunView) -> str:
    result = view.result
    front, best = set(result.pareto_front), result.best_id
    rows = []
    for c in result.candidates:
        marks = ("best " if c.id == best else "") + ("front" if c.id in front else "")
        rows.append(
            [
                f'<a href="#candidate-{int(c.id)}">{int(c.id)}</a>',
                _e(c.origin),
                ", ".join(f'<a href="#candidate-{int(p)}">{int(p)}</a>' for p in c.parents) or "—",
                _pct(c.val_score),
                str(len(c.val_scores)),
                _e(c.discovered_at),
                marks.strip() or "",
            ]
        )
    return _table(
        ["id", "origin", "parents", "validation", "examples scored", "found at (metric calls)", ""],
        rows,
        "candidates",
    )


def _component_block(name: str, value: object, parent_value: object | None, parent_id: int | None) -> str:
    text = component_text(value)
    if parent_value is None:
        return f"<h4>{_e(name)}</h4><pre>{_e(text)}</pre>"
    before = component_text(parent_value)
    if before == text:
        return f'<h4>{_e(name)} <span class="muted">(as in candidate {_e(parent_id)})</span></h4>'
    diff = difflib.HtmlDiff().make_table(
        before.splitlines(), text.splitlines(), f"candidate {parent_id}", "this candidate"
    )
    return f'<h4>{_e(name)} <span class="muted">(changed from candidate {_e(parent_id)})</span></h4>{diff}'


def _candidate_sections(view: RunView) -> str:
    by_id: dict[int, Candidate] = {c.id: c for c in view.result.candidates}
    parts = []
    for c in view.result.candidates:
        parent = by_id.get(c.parents[0]) if c.parents else None
        cls = ' class="best"' if c.id == view.result.best_id else ""
        blocks = [
            _component_block(
                name,
                value,
                None if parent is None else parent.components.get(name),
                None if parent is None else parent.id,
            )
            for name, value in c.components.items()
        ]
        parts.append(
            f'<section id="candidate-{int(c.id)}"{cls}><h3>Candidate {int(c.id)}: {_e(c.origin)}, '
            f"validation {_pct(c.val_score)}</h3>{''.join(blocks)}</section>"
        )
    return "".join(parts)


def _score_matrix(view: RunView) -> str:
    examples = view.val_example_ids
    if not examples:
        return '<p class="muted">No candidate has per-example validation scores.</p>'
    head = "".join(f'<th class="example" title="{_e(x)}">{_e(x)}</th>' for x in examples)
    rows = []
    for c in view.result.candidates:
        cells = []
        for x in examples:
            score = c.val_scores.get(x)
            label = "" if score is None else f"{score:g}"
            tip = f"candidate {c.id}, {x}: " + ("not scored" if score is None else f"{score:g}")
            cells.append(f'<td style="background:{_score_colour(score)}" title="{_e(tip)}">{_e(label)}</td>')
        rows.append(f'<tr><th><a href="#candidate-{int(c.id)}">{int(c.id)}</a></th>{"".join(cells)}</tr>')
    return (
        f'<table class="matrix"><thead><tr><th>candidate</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _proposals(view: RunView) -> str:
    if not view.proposals:
        return '<p class="muted">This run logged no proposals.</p>'
    rows = [
        [
            str(p.iteration),
            _e(p.component),
            '<span class="accepted">scored</span>'
            if p.accepted
            else '<span class="rejected">rejected</span>',
            _e(p.reason),
            f"<pre>{_e(p.text)}</pre>" if p.text else "—",
        ]
        for p in view.proposals
    ]
    return _table(["iteration", "component", "", "reason", "proposed text"], rows, "proposals")


def _budget(view: RunView) -> str:
    b = view.result.budget
    rows = [
        ["metric calls", f"{b.metric_calls:,}"],
        ["LM calls (uncached)", f"{b.lm_calls:,} ({b.uncached_lm_calls:,})"],
        ["reflection / proposal LM calls", f"{b.proposer_lm_calls:,}"],
        ["judge LM calls", f"{b.judge_lm_calls:,}"],
        ["tokens (prompt + completion)", f"{b.prompt_tokens + b.completion_tokens:,}"],
        ["cost", f"${b.cost:.4f}"],
        ["wall time", f"{b.seconds:.0f} s"],
        ["unscored calls", f"{b.unscored_calls:,}"],
    ]
    return _table(["", ""], rows, "budget")


def render_run_page(view: RunView) -> str:
    """The page's HTML."""
    result = view.result
    charts = ""
    if result.candidates:
        charts = (
            '<div class="charts">'
            f'<figure id="learning-curve">{svg_figure(draw_curve, result, (6, 4))}</figure>'
            f'<figure id="lineage">{svg_figure(draw_lineage, result)}</figure></div>'
        )
    config_rows = [[_e(k), f"<code>{_e(v)}</code>"] for k, v in sorted(result.config.items())]
    note = (
        f'<p class="muted">{view.unreadable_events} line(s) of events.jsonl were not JSON '
        "and are left out.</p>"
        if view.unreadable_events
        else ""
    )
    body = [
        f"<h1>{_e(result.optimizer)} run: {_e(view.run_dir.name)}</h1>",
        f"<p>{_e(result.summary())}</p>",
        f"<p>Stopped: {_e(result.stop_reason or 'the run ended')}. Best: "
        f'<a href="#candidate-{int(result.best_id)}">candidate {int(result.best_id)}</a>, '
        f"Pareto front: {', '.join(str(int(i)) for i in result.pareto_front) or '—'}.</p>",
        note,
        "<h2>Learning curve and lineage</h2>",
        charts or '<p class="muted">No candidates.</p>',
        "<h2>Candidates</h2>",
        _candidates_table(view),
        "<h2>Scores per validation example</h2>",
        _score_matrix(view),
        "<h2>Prompts, with each candidate's changes against its first parent</h2>",
        _candidate_sections(view),
        "<h2>Proposals</h2>",
        _proposals(view),
        "<h2>Budget</h2>",
        _budget(view),
        "<h2>Config</h2>",
        _table(["option", "value"], config_rows, "config"),
    ]
    title = f"{result.optimizer} run {view.run_dir.name}"
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>"
    )


def write_run_page(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the page of the run in ``run_dir`` (default: ``<run_dir>/report.html``)."""
    view = load_run_view(run_dir)
    path = Path(out) if out else Path(run_dir) / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_run_page(view), encoding="utf-8")
    return path


def add_subcommand(sub: object) -> None:
    p = sub.add_parser(  # type: ignore[attr-defined]
        "report", help="an HTML page of an optimization run (its run directory holds result.json)"
    )
    p.add_argument(
        "run_dir", help="the run directory (run_dir= of the optimizer, or a bench cell's runs/KEY)"
    )
    p.add_argument("--out", help="the page to write (default: RUN_DIR/report.html)")
    p.set_defaults(func=cmd_report)


def cmd_report(args: object) -> int:
    import sys

    from promptopt.run_page.view import RunViewError

    try:
        path = write_run_page(args.run_dir, args.out)  # type: ignore[attr-defined]
    except RunViewError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0
