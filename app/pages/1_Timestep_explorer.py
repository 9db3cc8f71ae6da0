"""Timestep explorer: what each DiT layer knows at each timestep (probe accuracy, label MI, HFR), and x_t itself."""
from __future__ import annotations

import streamlit as st

from analysis.figures import immse_curve, mi_curves, probe_curves, probe_heatmap
from app import jobs, state

state.page("Timestep explorer", "Linear-probe accuracy, label mutual information and high-frequency ratio of the "
                                "DiT's features over timestep t and layer, from `analysis.pipeline.analyze_run`.")
run = state.pick_run()
if run is None or not state.require(run, ("probe", "hfr", "immse", "selection"), "Timestep analysis", "analyze",
                                    lambda: jobs.analyze_command(run, state.DEFAULT_TIMESTEPS, 500)):
    st.stop()

probe, hfr, mi = state.table(run, "probe"), state.table(run, "hfr"), state.table(run, "mi")
selection, immse = state.table(run, "selection"), state.table(run, "immse")
METRICS = {"probe accuracy": (probe, "accuracy"), "k-NN accuracy": (probe, "knn_accuracy"),
           "label MI I(y; features)": (mi, "mi_nats"), "high-frequency ratio": (hfr, "hfr_mean")}
available = [name for name, (df, col) in METRICS.items() if df is not None and col in df and df[col].notna().any()]

choices = st.columns(len(selection))
for col, row in zip(choices, selection.itertuples()):
    col.metric(f"{row.method} choice", f"t={row.timestep} · {row.layer}", f"accuracy {row.accuracy_at_choice:.3f}",
               delta_color="off", delta_arrow="off",
               help=f"{row.cost_image_passes:,} image-passes, regret {row.regret:.3f}")

metric = st.radio("measure", available, horizontal=True)
df, column = METRICS[metric]
layers = [layer for layer in df.layer.unique() if layer != "pixels"]
timesteps = sorted(int(t) for t in df.timestep.unique())
t = st.select_slider("timestep t", timesteps, value=timesteps[0])
pooling = "mean" if "pooling" in df else None
left, right = st.columns(2)
with left:
    state.show(probe_heatmap(df, metric=column, pooling=pooling), "heatmap", mark_x=t)
with right:
    shown = st.multiselect("layers", layers, default=layers[-1:] + layers[:1] if len(layers) > 1 else layers)
    rows = df[df.layer.isin([*shown, "pixels"])]
    curves = mi_curves(rows) if column == "mi_nats" else probe_curves(rows, selection, metric=column, pooling=pooling)
    state.show(curves, "curves", mark_x=t, yaxis_title=metric)

st.subheader(f"Noised examples x_t at t = {t}")
x0, xt, names = state.noised_examples(str(run), t)
st.image(list(x0), caption=names, width=64, clamp=True)
st.image(list(xt), caption=[f"t = {t}"] * len(xt), width=64, clamp=True)

st.subheader("How much of the image survives: I(x₀; x_t)")
state.show(immse_curve(immse), "immse", height=300, mark_x=t)
