"""Curricula: the timestep distribution p(t) a policy trained with, over training, for one run or two side by side."""
from __future__ import annotations

from pathlib import Path

import plotly.express as px
import streamlit as st

from analysis.curriculum import bin_table, load_class_curriculum, policy_kl, snapshot, spread
from analysis.figures import class_curriculum_heatmap, curriculum_heatmap
from app import state
from aselect_core.train.rundir import RunDir

state.page("Curricula", "p(t) snapshots of each run's timestep policy (`curriculum.parquet`), their effective number "
                        "of timesteps exp(H), and per-class p(t | y) for image-conditioned policies.")
runs = [r for r in state.list_runs() if r.error is None]
first = state.pick_run("run", runs=runs)
if first is None:
    st.stop()
others = ["(none)"] + [r.name for r in runs if r.path != first]
second = st.sidebar.selectbox("compare with", others, key="compare_with")
shown = [first] + ([state.runs_root() / second] if second != "(none)" else [])


def curriculum_column(run: Path, key: str) -> None:
    """One run's p(t) heatmap, the snapshot at the slider's step, its spread, and p(t | y) when logged."""
    cur = state.table(run, "curriculum")
    if cur is None:
        st.info(f"`{run.name}` has no curriculum.parquet (its training has not written a snapshot yet).")
        return
    st.subheader(f"`{run.name}` · {state.run_info(run).policy}")
    steps = sorted(int(s) for s in cur.step.unique())
    step = st.select_slider("training step", steps, value=steps[-1], key=f"step_{key}")
    state.show(curriculum_heatmap(cur), f"heat_{key}", height=380, mark_x=step)
    p = snapshot(cur, step).rename("probability").to_frame().join(bin_table(cur).set_index("bin"))
    fig = px.bar(p, x="t_mid", y="probability", labels={"t_mid": "timestep t (bin centre)", "probability": "p(bin)"})
    st.plotly_chart(state.framed(fig.update_layout(height=240, title=f"p(t) at step {step}")), key=f"snap_{key}")
    s = spread(cur).set_index("step").loc[step]
    st.metric("effective timesteps exp(H)", f"{s.effective_timesteps:.0f}",
              help=f"exp(entropy) over bins: {s.effective_bins:.1f} bins")
    classes = load_class_curriculum(run)
    if classes is not None:
        class_steps = sorted(int(c) for c in classes.step.unique())
        at = max([c for c in class_steps if c <= step] or class_steps[:1])
        state.show(class_curriculum_heatmap(classes, step=at), f"classes_{key}", height=320)


for run, column, key in zip(shown, st.columns(len(shown)), "ab"):
    with column:
        curriculum_column(run, key)

if len(shown) == 2:
    a, b = (state.table(r, "curriculum") for r in shown)
    if a is not None and b is not None:
        try:
            st.metric(f"KL(p_{shown[0].name} ‖ p_{shown[1].name}), last snapshots", f"{policy_kl(a, b):.3f} nats")
        except ValueError as e:
            st.caption(f"No KL between these runs: {e}")
