"""How long each app page takes to show its results (issue 18 item 5): the real server in headless Chromium on a
runs root (the shipped runs by default), every page visited twice — cold (the server's caches empty) and warm (its
`st.cache_data` filled by the first visit) — timed from navigation until the page's chart is drawn and its script
has finished; warm visits both as a fresh load and as a switch by the sidebar link. Prints a table and writes
`results/app_latency.csv`. The target: warm visits under 1 s per page.

    .venv/bin/python bench/app_latency.py [--runs DIR] [--repeats 3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from app.headless import ARGS, CHROMIUM, PAGES, navigate, serving, visit  # noqa: E402
from app.serve import DEMO_RUNS  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
WARM_TARGET_S = 1.0


def measure(runs_root: Path, repeats: int, width: int = 1440) -> pd.DataFrame:
    """One row per page: the cold load (server caches empty), then the median of `repeats` warm loads (a fresh
    session: Streamlit's JS, websocket and script) and of `repeats` warm in-app switches (the sidebar link from the
    previous page: what a user does once the app is open)."""
    from playwright.sync_api import sync_playwright

    paths = list(PAGES)
    with serving(runs_root) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": width, "height": 1000})
        cold = {path: visit(page, url, path) for path in paths}
        load: dict[str, list[float]] = {path: [] for path in paths}
        switch: dict[str, list[float]] = {path: [] for path in paths}
        for _ in range(repeats):
            for path in paths:
                load[path].append(visit(page, url, path))
            for path in paths[1:] + paths[:1]:  # each page entered from the one before it
                switch[path].append(navigate(page, url, path))
        browser.close()
    return pd.DataFrame([{"page": path or "Home", "cold_load_s": cold[path],
                          "warm_load_s": statistics.median(load[path]),
                          "warm_switch_s": statistics.median(switch[path]),
                          "warm_switch_max_s": max(switch[path]),
                          "warm_under_1s": statistics.median(switch[path]) < WARM_TARGET_S} for path in paths])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=Path, default=DEMO_RUNS, help="runs root to serve (default: the shipped runs)")
    ap.add_argument("--repeats", type=int, default=3, help="warm visits per page")
    ap.add_argument("--out", type=Path, default=RESULTS / "app_latency.csv")
    args = ap.parse_args(argv)
    if not Path(CHROMIUM).is_file():
        raise SystemExit(f"{CHROMIUM} not found: the bench drives Debian's chromium (`make browser` installs it)")
    table = measure(args.runs, args.repeats)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
