"""Timestep explorer: what each DiT layer knows at each timestep (probe accuracy, label MI, HFR, segmentation
mIoU where the dataset has masks), and x_t itself."""
from __future__ import annotations

import streamlit as st

from analysis.figures import immse_curve, probe_curves, probe_heatmap
from analysis.segmentation import SEGMENTATION, mask_rgb
from app import choices, jobs, state
from aselect_core.diffusion import as_time

state.page("Timestep explorer", "Linear-probe accuracy, label mutual information and high-frequency ratio of the "
                                "DiT's features over timestep t and layer (and, where the dataset has masks, the "
                                "per-patch segmentation probe), from `analysis.pipeline.analyze_run`.")
run = state.pick_run()
if run is None or not state.require(run, ("probe", "hfr", "selection"), "Timestep analysis", "analyze",
                                    lambda: jobs.analyze_command(run, state.DEFAULT_TIMESTEPS, 500)):
    st.stop()

measures = choices.measure_choices()  # every registered grid's measures, then segmentation's
frames = {name: state.table(run, name) for name in dict.fromkeys(m.artefact for m in measures)}
available = {m.label: m for m in choices.held_measures(measures, frames)}
selection, immse = state.table(run, "selection"), state.table(run, "immse")

for col, row in zip(st.columns(len(selection)), selection.itertuples()):
    col.metric(f"{row.method} choice", f"t={row.timestep} · {row.layer}", f"accuracy {row.accuracy_at_choice:.3f}",
               delta_color="off", delta_arrow="off",
               help=f"{row.cost_image_passes:,} image-passes, regret {row.regret:.3f}")

metric = st.radio("measure", list(available), horizontal=True)
measure = available[metric]
df, column = frames[measure.artefact], measure.column
layers = [layer for layer in df.layer.unique() if layer != "pixels"]
timesteps = sorted(as_time(t) for t in df.timestep.unique())
oracle_t, oracle_layer = choices.oracle_cell(state.summary(run)) or (None, None)
axis = state.time_axis(run)
t = st.select_slider(axis.name, timesteps, value=choices.default_choice(timesteps, [], oracle_t),
                     format_func=axis.label)
pooling = "mean" if "pooling" in df else None
left, right = st.columns(2)
with left:
    state.show(probe_heatmap(df, metric=column, pooling=pooling, time_axis=axis), "heatmap", mark_x=t)
with right:
    shown = st.multiselect("layers", layers, default=choices.default_layers(layers, oracle_layer))
    rows = df[df.layer.isin([*shown, "pixels"])]
    marks = selection if measure.marks_selections else None
    state.show(probe_curves(rows, marks, metric=column, pooling=pooling, time_axis=axis), "curves", mark_x=t,
               yaxis_title=metric)
    if not set(measure.ci) <= set(df):
        st.caption(f"No 95% CI: this run's table has no `{'`, `'.join(measure.ci)}` (written before intervals).")

stored = state.segmentation_masks(run) if measure.artefact == SEGMENTATION.artefact else None
if stored is not None:
    best = (state.summary(run) or {}).get("segmentation") or {}
    left, right = st.columns([1, 3])
    layer = left.selectbox("layer of the predicted masks", layers,
                           index=layers.index(best["layer"]) if best.get("layer") in layers else 0)
    pred = stored.at(t, layer)
    cell = df[(df.timestep == t) & (df.layer == layer)]
    if best:
        left.caption(f"Best cell: t = {best['timestep']} · {best['layer']}, mIoU {best['best_miou']:.3f} "
                     f"(95% CI {best['miou_ci_low']:.3f}–{best['miou_ci_high']:.3f}); raw pixels "
                     f"{best['pixel_baseline_miou']:.3f}.")
    with right:
        st.subheader(f"Predicted masks at t = {t} · {layer}"
                     + (f" (mIoU {cell.miou.iloc[0]:.3f})" if len(cell) else ""))
        if pred is None:
            st.info(f"analysis/segmentation_masks.npz holds no predictions at t = {t} · {layer}.")
        else:
            n = len(pred)
            st.image([state.to_image(x) for x in stored.images], caption=[f"test image {i}" for i in range(n)],
                     width=96, clamp=True)
            st.image(list(mask_rgb(stored.masks)), caption=["true mask"] * n, width=96)
            st.image(list(mask_rgb(pred)), caption=["predicted"] * n, width=96)

info = state.run_info(run)
if info.vae is None:  # a latent DiT noises latents, not the images shown
    st.subheader(f"Noised examples x_t at t = {t}")
    x0, xt, names = state.noised_examples(str(run), t)
    width = 64 * len(names)  # 64 px an image
    st.image(x0, caption=f"x₀: {', '.join(map(str, names))}", width=width)
    st.image(xt, caption=f"x_t at t = {axis.label(t)}", width=width)

if immse is not None:  # `aselect analyze RUN` writes it; `analyze --model` does not
    st.subheader("How much of the image survives: I(x₀; x_t)")
    state.show(immse_curve(immse, time_axis=axis), "immse", height=300, mark_x=t)
