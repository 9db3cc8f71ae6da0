"""Runs: every run dir under the runs root, its training and analysis state, and jobs to train or analyse."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from app import choices, jobs, state
from aselect_core.datasets import list_datasets
from aselect_core.model import DIT_CONFIGS
from aselect_core.policies import POLICIES

state.page("Runs", "Each run dir under the runs root: its dataset, model, policy, counted cost (DiT image-passes), "
                   "best probe accuracy, which analyses it holds, and what it answers.")
root = state.runs_root()
st.sidebar.markdown(f"Runs root: `{root}`")
runs = state.list_runs(root)

if runs:
    columns = ["run", "dataset", "model", "policy", "steps", "image_passes", "best_probe_accuracy", "status",
               "analyses", "problem"]
    st.dataframe(pd.DataFrame([{**r.row, "problem": r.error or ""} for r in runs], columns=columns), hide_index=True,
                 width="stretch", column_config={
                     "best_probe_accuracy": st.column_config.NumberColumn("best probe acc.", format="%.3f"),
                     "image_passes": st.column_config.NumberColumn("image-passes", format="%d")})
    for r in runs:
        if r.error:
            st.warning(f"`{r.name}` is broken: {r.error}")
    answered = [r for r in runs if r.error is None]
    if answered:
        st.subheader("What each run answers")
        st.caption("From each run's `analysis/summary.json`: the oracle (timestep, layer) with its probe accuracy and "
                   "95% CI, the raw-pixel and random-init DiT baselines (best over their grids), what HFR and MI chose "
                   "and their regret in accuracy points; — where the run has no such field. Click a row to open the "
                   "run in the Timestep explorer.")
        answers = pd.DataFrame([{"run": r.name, **choices.answer_row(state.summary(r.path))} for r in answered],
                               columns=["run", *choices.ANSWER_COLUMNS])
        picked = st.dataframe(answers, hide_index=True, width="stretch", on_select="rerun",
                              selection_mode="single-row", key="answers").selection.rows
        if picked:
            state.open_run(answers.run.iloc[picked[0]])
else:
    st.info(f"No run dirs under `{root}` yet: start one below.")

st.header("Jobs")
run = state.pick_run("run", runs=runs)
if run is not None:
    st.subheader(f"`{run.name}`")
    train_col, analyze_col = st.columns(2)
    with train_col:
        st.markdown("**Training**")
        if state.job_panel(run, "train") is None:
            st.caption("No training job was started from the app for this run.")
    with analyze_col:
        st.markdown("**Analysis** (`analysis.pipeline.analyze_run`)")
        with st.form("analyze"):
            timesteps = st.multiselect("timesteps", list(range(0, 1000, 50)), default=state.DEFAULT_TIMESTEPS)
            n_images = st.number_input("probe images", 20, 5000, 500, step=20)
            go = st.form_submit_button("Analyse")
        if go:
            try:
                jobs.start(run, "analyze", jobs.analyze_command(run, sorted(timesteps), int(n_images)))
            except RuntimeError as e:
                st.error(str(e))
        state.job_panel(run, "analyze")

with st.expander("Train a new run", expanded=not runs):
    with st.form("train"):
        c1, c2, c3 = st.columns(3)
        name = c1.text_input("run name", "run")
        data = c1.selectbox("dataset", list_datasets())
        model = c2.selectbox("model", sorted(DIT_CONFIGS), index=sorted(DIT_CONFIGS).index("DiT-T/4"))
        policy = c2.selectbox("policy", sorted(POLICIES), index=sorted(POLICIES).index("uniform"))
        steps = c3.number_input("steps", 1, 1_000_000, 2000)
        batch = c3.number_input("batch size", 1, 4096, 64)
        size = c3.number_input("image size", 8, 256, 32, step=8)
        go = st.form_submit_button("Train")
    if go:
        out = root / name
        try:
            jobs.start(out, "train", jobs.train_command(out, data, model, policy, int(steps), int(batch), int(size)))
            st.session_state["_run"] = name
            st.rerun()
        except (RuntimeError, OSError) as e:
            st.error(str(e))
