"""A self-contained HTML page of one optimization run: ``promptopt report RUN_DIR``.

``view``   what the page shows, read from the run directory (``result.json``, ``events.jsonl``)
``page``   the page itself: curve, lineage, candidates with diffs against their parents, the score
           matrix, the proposals, budget and config; no script, no network at view time
"""

from promptopt.run_page.page import render_run_page, write_run_page
from promptopt.run_page.view import RunView, RunViewError, load_run_view

__all__ = ["RunView", "RunViewError", "load_run_view", "render_run_page", "write_run_page"]
