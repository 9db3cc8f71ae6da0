"""Compare: every readable run's policy, dataset, counted cost and best probe accuracy, and the Pareto front."""
from __future__ import annotations

import streamlit as st

from analysis.figures import comparison_table, policy_pareto
from app import state

state.page("Compare", "Policies × datasets at their counted training cost (image-passes): best probe accuracy, the "
                      "HFR choice, and the final spread of p(t) (`analysis.figures.comparison_table`).")
runs = [r.path for r in state.list_runs() if r.error is None]
if not runs:
    st.info(f"No readable run dirs under `{state.runs_root()}`.")
    st.stop()


@st.cache_data(show_spinner=False)
def comparison(paths: tuple[str, ...], key: tuple[float, ...]):
    return comparison_table(list(paths))


table = comparison(tuple(map(str, runs)), state.stamp(*(f for r in runs for f in state.run_files(r))))
datasets = st.multiselect("datasets", sorted(table.dataset.unique()), default=sorted(table.dataset.unique()))
shown = table[table.dataset.isin(datasets)].sort_values(["dataset", "policy", "image_passes"])
st.dataframe(shown, hide_index=True, width="stretch")
accuracy = st.radio("accuracy", ["best_accuracy", "hfr_accuracy"], horizontal=True,
                    format_func=lambda c: {"best_accuracy": "oracle (best cell)", "hfr_accuracy": "HFR choice"}[c])
if shown[accuracy].notna().any():
    state.show(policy_pareto(shown, accuracy=accuracy), "pareto", height=420)
else:
    st.info("No run shown has this accuracy yet: analyse runs on the Runs page.")
st.download_button("comparison.csv", shown.to_csv(index=False), "comparison.csv", "text/csv")
st.download_button("comparison.tex", shown.to_latex(index=False, float_format="%.3f", na_rep="–"), "comparison.tex")
