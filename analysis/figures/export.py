"""Static export of paper figures: PDF/SVG/PNG through kaleido (headless Chromium) plus the plotted data as CSV.

Starting Chromium costs seconds, rendering a figure a fraction of one: `export_session` keeps one browser (kaleido's
sync server) for a whole batch and stops it at the end; `export_figure` outside a session opens one just for
itself. MathJax is off by default — labels use Unicode and plotly's <sub>/<sup> tags, never $…$ — so nothing is
fetched from a CDN; pass `mathjax=` a local `tex-svg.js` (npm package mathjax@3, es5/tex-svg.js) for LaTeX labels.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import kaleido
import pandas as pd
import plotly.graph_objects as go
from choreographer.browsers.chromium import Chromium

FORMATS = ("pdf", "svg", "png", "jpeg", "webp")
RASTER_SCALE = 3  # raster formats at 3× the layout pixels: 288 dpi at the 96-dpi layout size
_sessions = 0  # depth of nested export_session blocks; the outermost one owns the browser


def find_browser() -> str:
    """The Chrome/Chromium kaleido will drive (BROWSER_PATH, else the usual install paths)."""
    path = os.environ.get("BROWSER_PATH") or Chromium.find_browser(skip_local=False)
    if not path or not Path(path).is_file():
        raise RuntimeError(f"static export needs Chrome or Chromium: none found (BROWSER_PATH={path or 'unset'}); "
                           "install it (apt-get install chromium) or set BROWSER_PATH")
    return path


@contextmanager
def export_session(mathjax: str | Path | None = None) -> Iterator[None]:
    """One headless browser for every export inside the block (nested blocks reuse the outer one)."""
    global _sessions
    if _sessions == 0:
        if mathjax is not None and not Path(mathjax).is_file():
            raise FileNotFoundError(f"mathjax: {mathjax} is not a file (expected MathJax 3's es5/tex-svg.js)")
        # the browser is checked first: a sync server whose browser fails to start would wait forever
        kaleido.start_sync_server(path=find_browser(), mathjax=str(mathjax) if mathjax else False,
                                  silence_warnings=True)
    _sessions += 1
    try:
        yield
    finally:
        _sessions -= 1
        if _sessions == 0:
            kaleido.stop_sync_server(silence_warnings=True)


def check_formats(formats: Sequence[str]) -> tuple[str, ...]:
    """The formats, lower-cased, all supported; refuses anything else in one line."""
    out = tuple(f.strip().lower() for f in formats)
    bad = [f for f in out if f not in FORMATS]
    if bad or not out:
        raise ValueError(f"formats: expected some of {list(FORMATS)}, got {list(formats)}")
    return out


def export_figure(fig: go.Figure, data: pd.DataFrame, out_dir: str | Path, name: str,
                  formats: Sequence[str] = ("pdf", "svg", "png"), scale: float = RASTER_SCALE) -> list[Path]:
    """Write `name.<format>` for each format and `name.csv` (exactly the plotted values); returns the paths.

    Vector formats keep the layout size (px at 96 dpi); raster formats are `scale` × that many pixels.
    """
    formats = check_formats(formats)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    size = {"width": fig.layout.width, "height": fig.layout.height}
    paths = []
    with export_session():
        for fmt in formats:
            opts = dict(format=fmt, scale=1 if fmt in ("pdf", "svg") else scale, **size)
            path = out_dir / f"{name}.{fmt}"
            path.write_bytes(kaleido.calc_fig_sync(fig, opts=opts))
            paths.append(path)
    csv = out_dir / f"{name}.csv"
    data.to_csv(csv, index=False)
    return [*paths, csv]
