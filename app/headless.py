"""The real app in headless Chromium: a server over a runs root, and a timed visit of one page until its results are
drawn. Shared by the browser test (`tests/test_app_browser.py`) and the latency bench (`bench/app_latency.py`).

Uses Playwright (a dev dependency) driving Debian's /usr/bin/chromium: never `playwright install`, which downloads.
"""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

from app.serve import REPO, RUNS_ENV, command

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
# page url path -> what it draws once its results are shown ("" is Home / Runs)
PAGES = {"": "[data-testid=stDataFrame]", **dict.fromkeys(
    ["Timestep_explorer", "Curricula", "Embeddings", "Attributions", "Compare", "Figures"], ".js-plotly-plot"),
    "Generation": "[data-testid=stImage] img"}
RUNNING = "[data-testid=stStatusWidget]"  # Streamlit's "Running..." badge, present while the script runs
TIMEOUT_MS = 90_000
STALE = "data-aselect-stale"  # marks charts drawn before a navigation


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(runs_root: Path) -> Iterator[str]:
    """The app server on `runs_root`, at the URL it yields once healthy; stopped on exit."""
    port = free_port()
    proc = subprocess.Popen(command(port), env={**os.environ, RUNS_ENV: str(runs_root)}, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        else:
            raise RuntimeError(f"the app server on port {port} did not become healthy within 60 s")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _drawn(page: Any, path: str) -> None:
    """Wait until `path`'s chart is present (not one marked stale) and its script has finished."""
    page.wait_for_selector(f"{PAGES[path]}:not([{STALE}])", timeout=TIMEOUT_MS)
    page.wait_for_function(f"!document.querySelector('{RUNNING}')", timeout=TIMEOUT_MS)


def visit(page: Any, url: str, path: str) -> float:
    """Load `url/path` afresh (a new session: Streamlit's JS, a websocket, the script) and wait until its results
    are drawn; returns the seconds from navigation to then."""
    start = time.perf_counter()
    page.goto(f"{url}/{path}")
    _drawn(page, path)
    return time.perf_counter() - start


def navigate(page: Any, url: str, path: str) -> float:
    """Switch to `path` from whichever page is open by its sidebar link, as a user does (same session, no reload),
    and wait until its results are drawn; returns the seconds from the click to then."""
    page.evaluate(f"() => document.querySelectorAll('{', '.join(set(PAGES.values()))}')"
                  f".forEach(e => e.setAttribute('{STALE}', ''))")  # the open page's charts do not count
    start = time.perf_counter()
    page.click(f"[data-testid=stSidebarNavLink][href='{url}/{path}']")
    page.wait_for_url(f"{url}/{path}", timeout=TIMEOUT_MS)
    _drawn(page, path)
    return time.perf_counter() - start
