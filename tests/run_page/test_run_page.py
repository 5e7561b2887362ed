"""The run page's content without a browser: every section, escaping, diffs, a clear error."""

from __future__ import annotations

import json
import re

import pytest

from promptopt.cli import main as promptopt_main
from promptopt.run_page import RunViewError, load_run_view, render_run_page, write_run_page
from tests.optimizers.gepa.test_gepa import run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gepa") / "run"
    run(folder)
    return folder


def test_the_page_shows_curve_lineage_candidates_matrix_diffs_and_proposals(run_dir):
    view = load_run_view(run_dir)
    page = render_run_page(view)
    assert page.count("<svg") == 2 and 'id="learning-curve"' in page and 'id="lineage"' in page
    # Nothing is fetched at view time (the SVGs' xmlns names are not fetched).
    assert not re.search(r"""(src|href)=["']?(https?:)?//|url\(\s*["']?https?:|@import""", page)
    best = view.result.best_id
    assert f'id="candidate-{best}"' in page and 'class="diff"' in page
    assert '<span class="diff_add">' in page  # the best candidate's added text, marked
    assert 'class="matrix"' in page and view.val_example_ids and all(x in page for x in view.val_example_ids)
    assert "rules +" in page  # a proposal's reason
    assert "<script" not in page


def test_prompt_text_is_escaped(run_dir, tmp_path):
    result = json.loads((run_dir / "result.json").read_text())
    result["candidates"][0]["components"]["self.instruction"] = "<script>alert(1)</script> & <b>"
    copy = tmp_path / "run"
    copy.mkdir()
    (copy / "result.json").write_text(json.dumps(result))
    page = write_run_page(copy).read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;" in page


def test_a_folder_without_a_result_is_named_with_what_to_do(tmp_path, capsys):
    with pytest.raises(RunViewError, match=r"result\.json does not exist: give the run directory"):
        load_run_view(tmp_path)
    (tmp_path / "result.json").write_text("{not json")
    assert promptopt_main(["report", str(tmp_path)]) == 2
    assert "not a readable optimization result" in capsys.readouterr().err


def test_the_command_writes_the_page_and_a_torn_event_line_is_counted(run_dir, tmp_path, capsys):
    events = (run_dir / "events.jsonl").read_text()
    copy = tmp_path / "run"
    copy.mkdir()
    (copy / "result.json").write_text((run_dir / "result.json").read_text())
    (copy / "events.jsonl").write_text(events + '{"event": "propos')
    assert promptopt_main(["report", str(copy)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {copy / 'report.html'}"
    assert "1 line(s) of events.jsonl were not JSON" in (copy / "report.html").read_text()


def test_the_bench_page_shows_markup_in_its_report_as_text(tmp_path):
    from promptopt.bench.html_page import write_bench_page

    error = "502 <html><script>alert(1)</script><img src=x onerror=alert(2)></html>"
    text = f"# Report\n\n- `cell`: LMError: {error}\n"
    page = write_bench_page(tmp_path, text, []).read_text()
    assert "<script" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
