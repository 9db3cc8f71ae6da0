"""Compare: policies × datasets at counted training cost, the accuracy-vs-cost Pareto plot, and the seed table."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from analysis.compare import pareto_front
from analysis.figures import policy_pareto, seed_table_dots
from analysis.seed_table import load_seed_table, to_latex
from app import state

ACCURACY = {"oracle_accuracy": "oracle (best probe cell)", "hfr_accuracy": "HFR choice",
            "pixel_accuracy": "raw-pixel baseline"}
state.page("Compare", "One row per run (`analysis.compare.compare_runs`): policy, dataset, counted training cost in "
                      "image-passes, the spread of p(t), the oracle and HFR probe accuracies; `pareto` marks the runs "
                      "no other run of their dataset beats on both cost and accuracy. Below: the seed article's "
                      "table as `bench/seed_table.py` measured it.")


@st.cache_data(show_spinner=False)
def seed_table(path: str, key: tuple[float, ...]):
    return load_seed_table(path)


def runs_section() -> None:
    runs = [r.path for r in state.list_runs()]
    if not runs:
        st.info(f"No run dirs under `{state.runs_root()}`.")
        return
    table = state.comparison(runs)
    accuracy = st.radio("accuracy", list(ACCURACY), horizontal=True, format_func=ACCURACY.get)
    datasets = sorted(table.dataset.dropna().unique())
    chosen = st.multiselect("datasets", datasets, default=datasets)
    shown = table[table.dataset.isin(chosen) | table.dataset.isna()]  # broken runs stay listed, with why
    shown = shown.assign(pareto=pareto_front(shown, "image_passes", accuracy))
    st.dataframe(shown.drop(columns=["path"]), hide_index=True, width="stretch")
    plotted = shown[accuracy].notna() & shown.image_passes.notna()  # models trained elsewhere have no counted cost
    if plotted.any():
        state.show(policy_pareto(shown[plotted], accuracy=accuracy), "pareto", height=420)
    elif shown[accuracy].notna().any():
        st.info("The runs shown with this accuracy have no counted training cost (models analysed with "
                "`aselect analyze --model`), so there is no cost axis to plot them on.")
    else:
        st.info("No run shown has this accuracy yet: analyse runs on the Runs page.")
    st.download_button("comparison.csv", shown.to_csv(index=False), "comparison.csv", "text/csv")
    st.download_button("comparison.tex", shown.to_latex(index=False, float_format="%.3f", na_rep="–"),
                       "comparison.tex")


def seed_table_section() -> None:
    st.subheader("The seed's table, measured")
    path = Path(st.text_input("seed table CSV", str(state.seed_table_path()), key="seed_table_path"))
    if not path.is_file():
        st.info(f"No seed table at `{path}`: `python bench/seed_table.py` measures it (hours on 2 CPU cores; "
                "`--quick` for a smoke run).")
        return
    try:
        table = seed_table(str(path), state.stamp(path))
    except ValueError as e:
        st.error(str(e))
        return
    st.caption("Linear-probe accuracy at each run's oracle-best (timestep, layer), mean ± std over seeds; every "
               "trained row spent the same counted image-passes as Full (cost ≈ 100%). bench/README.md says how "
               "it was measured.")
    st.dataframe(table, hide_index=True, width="stretch")
    state.show(seed_table_dots(table), "seed_table", height=80 + 36 * table.method.nunique())
    st.download_button("seed_table.tex", to_latex(table), "seed_table.tex")


runs_section()
seed_table_section()
