"""Screenshots of a run page and a bench page in headless Chromium, for the README.

    python benchmarks/page_screenshots.py --run runs/task-apps/node-iris-reflector-1.5b-200/run \\
        --bench results/peers-local --out results/run-pages

Writes ``run-page.png`` and ``bench-page.png`` (the top of each page, 1280 px wide) and
``screenshots.json`` with the provenance: the pages' sources and the command.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from promptopt.bench import build_report
from promptopt.io import write_json_atomic
from promptopt.provenance import collect
from promptopt.run_page import write_run_page
from promptopt.run_page.chromium import CHROMIUM_FLAGS, find_chromium


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True, help="a run directory (holds result.json)")
    ap.add_argument("--bench", required=True, help="a bench output folder (holds cells/)")
    ap.add_argument("--out", default="results/run-pages")
    ap.add_argument("--height", type=int, default=2400, help="pixels of each page kept, from its top")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    chromium = find_chromium()
    if chromium is None:
        raise SystemExit("Chromium is not installed: apt-get install chromium")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pages = {"run-page.png": write_run_page(args.run), "bench-page.png": build_report(args.bench).html}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=list(CHROMIUM_FLAGS))
        for name, page_file in pages.items():
            page = browser.new_page(viewport={"width": 1280, "height": args.height})
            page.goto(Path(page_file).resolve().as_uri())
            page.screenshot(path=str(out / name))
            page.close()
        browser.close()
    write_json_atomic(
        out / "screenshots.json",
        {
            "pages": {name: str(path) for name, path in pages.items()},
            "provenance": collect().to_dict(),
        },
    )
    print(f"wrote {', '.join(str(out / n) for n in pages)}")


if __name__ == "__main__":
    main()
