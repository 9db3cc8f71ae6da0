"""The one look of every paper figure: serif font at 9 pt, white background, thin axes, colour-blind-safe colours.

Sizes are in CSS pixels at 96 dpi (what plotly lays out in): one column is 3.5 in = 336 px, two columns
7.16 in = 687 px, so a 12 px font prints at 9 pt. Categories use the Okabe–Ito palette (8 colours, safe for
the common colour-vision deficiencies); ordered series (layers by depth, timestep bins) and more than 8
categories sample viridis; heatmaps use viridis (cividis for signed attributions).
"""
from __future__ import annotations

import plotly.graph_objects as go
from plotly.colors import sample_colorscale

FONT = "Latin Modern Roman, Times New Roman, Liberation Serif, serif"
FONT_SIZE = 12  # px at 96 dpi = 9 pt
OKABE_ITO = ("#000000", "#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#F0E442")
HEATMAP = "Viridis"
SIGNED_HEATMAP = "Cividis"
DPI = 96
WIDTHS = {"one": round(3.5 * DPI), "two": round(7.16 * DPI)}  # px: 336, 687
AXIS = dict(showline=True, linewidth=0.75, linecolor="black", mirror=True, ticks="outside", tickwidth=0.75,
            ticklen=3, showgrid=False, zeroline=False, title_standoff=4)

COLORBAR = dict(thickness=8, outlinewidth=0, tickfont=dict(size=FONT_SIZE - 2), title_side="right")

TEMPLATE = go.layout.Template(layout=dict(
    font=dict(family=FONT, size=FONT_SIZE, color="black"),
    title=dict(font=dict(size=FONT_SIZE + 1), x=0.5, xanchor="center", y=1, yanchor="top", pad=dict(t=4)),
    paper_bgcolor="white", plot_bgcolor="white", colorway=list(OKABE_ITO),
    colorscale=dict(sequential=HEATMAP, sequentialminus=HEATMAP),
    xaxis=AXIS, yaxis=AXIS, margin=dict(l=48, r=8, t=8, b=40),
    # legends sit in a row above the plot, so a one-column figure keeps its full width for data
    legend=dict(orientation="h", x=0, xanchor="left", y=1.02, yanchor="bottom", font=dict(size=FONT_SIZE - 2),
                bgcolor="rgba(255,255,255,0)", itemwidth=30, entrywidthmode="fraction"),
), data=dict(heatmap=[go.Heatmap(colorscale=HEATMAP, colorbar=COLORBAR)]))


LEGEND_COLUMNS = {"one": 3, "two": 6}
TITLE_MARGIN = 30  # px of top margin a figure with a title needs


def figure_size(size: str, height: int | None = None) -> dict[str, int]:
    """layout width/height for a one- or two-column figure (height defaults to 3:4 of the column width)."""
    if size not in WIDTHS:
        raise ValueError(f"size: expected one of {sorted(WIDTHS)}, got {size!r}")
    return {"width": WIDTHS[size], "height": height or round(WIDTHS["one"] * 0.75)}


def layout_for(size: str, height: int | None = None) -> dict:
    """The size-dependent layout: width, height and a legend of 3 (one column) or 6 (two) entries per row."""
    return {**figure_size(size, height), "legend_entrywidth": 1 / LEGEND_COLUMNS[size]}


def colors(n: int) -> list[str]:
    """n category colours: Okabe–Ito when it has enough, else n samples of viridis (readable in grey too)."""
    return list(OKABE_ITO[:n]) if n <= len(OKABE_ITO) else sample_colorscale(HEATMAP, [i / (n - 1) for i in range(n)])


def ordered_colors(n: int) -> list[str]:
    """n colours for an ordered series (depth, timestep bin): viridis from dark to light, yellow end trimmed."""
    return sample_colorscale(HEATMAP, [0.9 * i / max(n - 1, 1) for i in range(n)])
