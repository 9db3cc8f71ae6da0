"""The real app server in headless Chromium (Playwright, Debian's /usr/bin/chromium) on the shipped runs: every
page draws its results on first open (a plot or an image, not a compute button), shows no exception box and no
Deploy button. Screenshots go to a tmp dir; with ASELECT_SCREENSHOT=1 the explorer's is also saved to
docs/screenshot_explorer.png for the README."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from app.headless import ARGS, CHROMIUM, PAGES, serving, visit
from app.serve import DEMO_RUNS

pytest.importorskip("playwright")
from playwright.sync_api import sync_playwright  # noqa: E402

DOCS = Path(__file__).resolve().parents[1] / "docs"
WIDTHS = (1440, 1024, 1920)  # px: the first is where pages open and screenshots are taken
# every plot's tick labels and axis lines (frame) lie inside its container, as (left, right) pairs that do not
OUTSIDE = """() => [...document.querySelectorAll('.js-plotly-plot')].flatMap(plot => {
    const box = plot.getBoundingClientRect();
    return [...plot.querySelectorAll('.xtick text, .ytick text, path.xlines-above, path.ylines-above')]
        .map(e => e.getBoundingClientRect())
        .filter(r => r.width > 0 && (r.left < box.left || r.right > box.right))
        .map(r => [r.left - box.left, r.right - box.left, box.width]);
})"""

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason="needs Debian's chromium")


@pytest.fixture(scope="module")
def server():
    with serving(DEMO_RUNS) as url:
        yield url


def bad_input_root(root: Path) -> dict[str, str]:
    """A good shipped run beside four bad ones; returns {bad run: what its warning must name}."""
    good = DEMO_RUNS / "shapes-uniform"
    shutil.copytree(good, root / "good")
    truncated = shutil.copytree(good, root / "truncated-checkpoint")
    ckpt = next((truncated / "checkpoints").glob("*.safetensors"))
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    (shutil.copytree(good, root / "bad-summary") / "analysis" / "summary.json").write_text("{not json")
    shutil.rmtree(shutil.copytree(good, root / "no-analysis") / "analysis")
    (root / "not-a-run").mkdir()
    (root / "not-a-run" / "notes.txt").write_text("not a run dir")
    return {"truncated-checkpoint": "safetensors", "bad-summary": "summary.json"}


def test_bad_input_root_lists_good_runs_and_names_bad_files(tmp_path):
    expected = bad_input_root(tmp_path / "runs")
    with serving(tmp_path / "runs") as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": WIDTHS[0], "height": 1000})
        for path in PAGES:
            visit(page, url, path)
            assert page.locator("[data-testid=stException]").count() == 0, path
            if path == "":
                warnings = page.locator("[data-testid=stAlert]").all_inner_texts()
                page.screenshot(path=tmp_path / "bad-root.png", full_page=True)
                for run, names in expected.items():
                    assert any(run in w and names in w for w in warnings), (run, warnings)
                listed = ("good", "no-analysis")  # whole runs (one not analysed yet) are listed, not flagged
                assert not [w for w in warnings if w.split(" ")[0] in listed], warnings
        browser.close()


def test_every_page_draws_its_results_inside_its_frame(server, tmp_path):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": WIDTHS[0], "height": 1000})
        for path in PAGES:
            page.set_viewport_size({"width": WIDTHS[0], "height": 1000})
            visit(page, server, path)
            assert page.locator("[data-testid=stException]").count() == 0, path
            assert page.locator("[data-testid=stAppDeployButton]").count() == 0, path
            shot = tmp_path / f"{path or 'Home'}.png"
            page.screenshot(path=shot, full_page=True)
            if path == "Timestep_explorer" and os.environ.get("ASELECT_SCREENSHOT"):
                page.screenshot(path=DOCS / "screenshot_explorer.png", type="png")
            for width in WIDTHS:
                page.set_viewport_size({"width": width, "height": 1000})
                page.wait_for_timeout(1000)  # plotly re-lays out to the new container width
                assert page.evaluate(OUTSIDE) == [], (path, width)
        browser.close()
    assert len(list(tmp_path.glob("*.png"))) == len(PAGES)
