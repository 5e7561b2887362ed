"""The run page and the bench page in a real browser (headless Chromium from Debian's ``chromium``
package, driven by Playwright without any browser download): what a person would see renders, a
prompt diff is shown, a cell links to its run page, and the console stays free of errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptopt.bench import build_report, run_matrix
from promptopt.run_page import write_run_page
from promptopt.run_page.chromium import CHROMIUM_FLAGS, find_chromium
from tests.bench.conftest import make_lms, make_spec
from tests.conftest import in_ci
from tests.optimizers.gepa.test_gepa import run

CHROMIUM = find_chromium()
FLAGS = list(CHROMIUM_FLAGS)

if CHROMIUM is None and in_ci():
    pytest.fail(
        "CI is set but Chromium is not installed: scripts/setup.sh installs Debian's chromium package "
        "when it runs as root; install it (apt-get install chromium) or set PROMPTOPT_CHROMIUM.",
        pytrace=False,
    )
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)"
)


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


class _Page:
    """A page opened from a file, with its console errors collected."""

    def __init__(self, browser, path: Path) -> None:
        self.errors: list[str] = []
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(path.as_uri())

    def visible_size(self, selector: str) -> tuple[float, float]:
        box = self.page.locator(selector).first.bounding_box()
        assert box is not None, f"{selector} is not rendered"
        return box["width"], box["height"]


def test_a_run_page_shows_its_curve_lineage_and_a_prompt_diff(browser, tmp_path):
    run(tmp_path / "run")
    page = _Page(browser, write_run_page(tmp_path / "run"))
    for chart in ("#learning-curve svg", "#lineage svg"):
        width, height = page.visible_size(chart)
        assert width > 200 and height > 150
    assert page.page.locator("#lineage svg text").filter(has_text="lineage").count() == 1
    best = page.page.locator("section.best")
    added = " ".join(best.locator("table.diff .diff_add").all_inner_texts())
    assert "uppercase" in added.lower()  # the reflected rule, marked as added to the seed's prompt
    assert page.page.locator("table.matrix tbody tr").count() >= 2
    page.page.screenshot(path=str(tmp_path / "run-page.png"), full_page=True)
    assert page.errors == []


def test_the_bench_page_shows_its_tables_and_charts_and_links_each_cell_to_its_run(browser, tmp_path):
    spec = make_spec(tmp_path / "bench", seeds=[0])
    run_matrix(spec, lms=make_lms(), progress=False)
    files = build_report(spec.out)
    page = _Page(browser, files.html)
    assert page.page.locator("h2").filter(has_text="Summary").count() == 1
    summary_chart = page.page.locator("img[alt='summary']")
    assert summary_chart.evaluate("img => img.complete && img.naturalWidth > 0")
    page.page.locator("a", has_text="run page").first.click()
    assert page.page.locator("h1").inner_text().startswith("promptopt.GEPA run")
    assert page.page.locator("#lineage svg").count() == 1
    assert page.errors == []
