"""The real app server in headless Chromium (Playwright, Debian's /usr/bin/chromium): every page draws its plot
and shows no exception box. Screenshots go to a tmp dir; with ASELECT_SCREENSHOT=1 the explorer's is also saved
to docs/screenshot_explorer.png for the README."""
from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from app.serve import RUNS_ENV, command

pytest.importorskip("playwright")
from playwright.sync_api import sync_playwright  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
DOCS = Path(__file__).resolve().parents[1] / "docs"
# page url path -> what must be drawn there ("" is Home / Runs)
PAGES = {"": "[data-testid=stDataFrame]", "Timestep_explorer": ".js-plotly-plot", "Curricula": ".js-plotly-plot",
         "Embeddings": "[data-testid=stButton]", "Attributions": "[data-testid=stButton]",
         "Compare": ".js-plotly-plot", "Figures": ".js-plotly-plot"}

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason="needs Debian's chromium")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_run):
    from analysis.pipeline import analyze_run

    root = tmp_path_factory.mktemp("runs")
    analyze_run(tiny_run(root / "a", curriculum_every=2), timesteps=[0, 500], layers=[0, 1], n_images=40,
                immse_images=8, methods=("oracle", "hfr", "mi"), embedding=False, progress=False)
    port = free_port()
    proc = subprocess.Popen(command(port), env={**os.environ, RUNS_ENV: str(root)}, cwd=Path(__file__).parents[1],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
            break
        except OSError:
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=20)


def test_every_page_draws_without_exception(server, tmp_path):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        for path, selector in PAGES.items():
            page.goto(f"{server}/{path}")
            page.wait_for_selector(selector, timeout=90_000)
            page.wait_for_function("!document.querySelector('[data-testid=stStatusWidget]')", timeout=90_000)
            assert page.locator("[data-testid=stException]").count() == 0, path
            shot = tmp_path / f"{path or 'Home'}.png"
            page.screenshot(path=shot, full_page=True)
            if path == "Timestep_explorer" and os.environ.get("ASELECT_SCREENSHOT"):
                page.screenshot(path=DOCS / "screenshot_explorer.png", type="png")
        browser.close()
    assert len(list(tmp_path.glob("*.png"))) == len(PAGES)
