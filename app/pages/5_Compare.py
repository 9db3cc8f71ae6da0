"""Compare: policies × datasets at counted training cost, and the accuracy-vs-cost Pareto plot."""
from __future__ import annotations

import streamlit as st

from analysis.compare import compare_runs, pareto_front
from analysis.figures import policy_pareto
from app import state

ACCURACY = {"oracle_accuracy": "oracle (best probe cell)", "hfr_accuracy": "HFR choice",
            "pixel_accuracy": "raw-pixel baseline"}
state.page("Compare", "One row per run (`analysis.compare.compare_runs`): policy, dataset, counted training cost in "
                      "image-passes, the spread of p(t), the oracle and HFR probe accuracies; `pareto` marks the runs "
                      "no other run of their dataset beats on both cost and accuracy.")
runs = [r.path for r in state.list_runs()]
if not runs:
    st.info(f"No run dirs under `{state.runs_root()}`.")
    st.stop()


@st.cache_data(show_spinner=False)
def comparison(paths: tuple[str, ...], key: tuple[float, ...]):
    return compare_runs(list(paths))


table = comparison(tuple(map(str, runs)), state.stamp(*(f for r in runs for f in state.run_files(r))))
accuracy = st.radio("accuracy", list(ACCURACY), horizontal=True, format_func=ACCURACY.get)
datasets = sorted(table.dataset.dropna().unique())
chosen = st.multiselect("datasets", datasets, default=datasets)
shown = table[table.dataset.isin(chosen) | table.dataset.isna()]  # broken runs stay listed, with why
shown = shown.assign(pareto=pareto_front(shown, "image_passes", accuracy))
st.dataframe(shown.drop(columns=["path"]), hide_index=True, width="stretch")
if shown[accuracy].notna().any():
    state.show(policy_pareto(shown, accuracy=accuracy), "pareto", height=420)
else:
    st.info("No run shown has this accuracy yet: analyse runs on the Runs page.")
st.download_button("comparison.csv", shown.to_csv(index=False), "comparison.csv", "text/csv")
st.download_button("comparison.tex", shown.to_latex(index=False, float_format="%.3f", na_rep="–"), "comparison.tex")
