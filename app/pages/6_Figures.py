"""Figures: the paper figures of a run (`analysis.figures.FIGURES`), previewed and downloadable."""
from __future__ import annotations

import tempfile
from pathlib import Path

import streamlit as st

from analysis.figures import FIGURES, export_figure, missing_inputs
from app import state

FORMATS = ("png", "svg", "pdf")
run = state.page_run("Figures", "Each figure the selected run's files allow, in the paper template; download it as "
                                "PNG, SVG or PDF (kaleido), its plotted data as CSV or a LaTeX table.")
ready = [name for name in FIGURES if not missing_inputs(name, run)]
for name in FIGURES:
    if name not in ready:
        st.sidebar.caption(f"{name}: needs {', '.join(missing_inputs(name, run))}")
chosen = st.multiselect("figures", ready, default=ready[:2], format_func=lambda n: f"{n} — {FIGURES[n].about}")
formats = st.multiselect("image formats", FORMATS, default=["png"])


@st.cache_data(show_spinner="exporting")
def exported(name: str, run: str, key: tuple[float, ...], formats: tuple[str, ...]) -> dict[str, bytes]:
    fig, data = state.figure(name, Path(run))
    with tempfile.TemporaryDirectory() as tmp:
        return {p.name: p.read_bytes() for p in export_figure(fig, data, tmp, name, formats)}


for name in chosen:
    st.subheader(name)
    fig, data = state.figure(name, run)
    st.plotly_chart(state.framed(fig), key=f"fig_{name}")  # at paper size, as exported
    cols = st.columns(len(formats) + 2)
    cols[-2].download_button("CSV", data.to_csv(index=False), f"{name}.csv", "text/csv", key=f"csv_{name}")
    cols[-1].download_button("LaTeX", data.to_latex(index=False, float_format="%.4g"), f"{name}.tex",
                             key=f"tex_{name}")
    if formats and cols[0].toggle("prepare image files", key=f"export_{name}"):
        files = exported(name, str(run), state.stamp(*state.run_files(run)), tuple(formats))
        for col, fmt in zip(cols, formats):
            col.download_button(fmt.upper(), files[f"{name}.{fmt}"], f"{name}.{fmt}", key=f"{fmt}_{name}")
