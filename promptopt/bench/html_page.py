"""The bench report as one self-contained page: ``report.md`` rendered (its charts inline) and a
table of the cells, each linking to its run's page where the run directory is at hand.

Run directories live under ``<out>/runs/`` (git ignores them): on the machine that ran the cells
each cell links to ``runs/<key>/report.html``; elsewhere, the table says the run is not here.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from pathlib import Path

from promptopt.bench.records import CellRecord
from promptopt.run_page import RunViewError, write_run_page
from promptopt.run_page.page import STYLE


def _inline_images(body: str, root: Path) -> str:
    """``<img src="charts/x.png">`` as data URIs, so the page needs no file beside it."""

    def inline(match: re.Match[str]) -> str:
        src = html.unescape(match.group(2))
        path = (root / src).resolve()
        if root.resolve() not in path.parents or not path.is_file():
            return match.group(0)
        data = base64.b64encode(path.read_bytes()).decode()
        return f'{match.group(1)}"data:image/png;base64,{data}"'

    return re.sub(r'(<img[^>]*?src=)"([^"]+\.png)"', inline, body)


def _run_pages(root: Path, cells: Sequence[CellRecord]) -> dict[str, str]:
    """key -> the run page's path relative to ``root``, for the cells whose run is here."""
    pages = {}
    for cell in cells:
        run_dir = root / "runs" / cell.key
        try:
            page = write_run_page(run_dir)
        except (RunViewError, OSError):
            continue  # not run here, or not a promptopt result (a peer writes its own files)
        pages[cell.key] = page.relative_to(root).as_posix()
    return pages


def _cells_table(cells: Sequence[CellRecord], pages: dict[str, str]) -> str:
    rows = []
    for cell in cells:
        numbers = cell.numbers
        test = f"{100 * numbers.optimized_test.score:.1f}" if numbers else "—"
        link = (
            f'<a href="{html.escape(pages[cell.key])}">run page</a>'
            if cell.key in pages
            else '<span class="muted">run not here</span>'
        )
        rows.append(
            f"<tr><td><code>{html.escape(cell.key)}</code></td><td>{html.escape(cell.status)}</td>"
            f"<td>{test}</td><td>{link}</td></tr>"
        )
    return (
        "<h2>Cells</h2><table><thead><tr><th>cell</th><th>status</th><th>optimized test</th><th></th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def write_bench_page(root: Path, markdown_text: str, cells: Sequence[CellRecord]) -> Path:
    """Write ``<root>/report.html``; returns its path."""
    import markdown

    renderer = markdown.Markdown(extensions=["tables"])
    # No raw HTML: report.md quotes error messages and file names, which may hold markup (an HTML
    # error page from an LM API); it must show as text, never become part of the page.
    renderer.preprocessors.deregister("html_block")
    renderer.inlinePatterns.deregister("html")
    body = renderer.convert(markdown_text)
    body = _inline_images(body, root)
    body += _cells_table(cells, _run_pages(root, cells))
    title = html.escape(f"LangProBe report: {root.name}")
    page = (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{STYLE}</style></head><body>{body}</body></html>"
    )
    out = root / "report.html"
    out.write_text(page, encoding="utf-8")
    return out
