"""Embeddings: a UMAP map of one block's pooled features at each timestep, coloured by class."""
from __future__ import annotations

import streamlit as st

from analysis.embedding import umap_for_run
from analysis.figures import umap_grid
from app import state

N_IMAGES = 300
run = state.page_run("Embeddings", "UMAP (`analysis.embedding.umap_trajectory`) of a block's mean-pooled features of "
                                   "the same images at each timestep, each map aligned to the previous one. Click a "
                                   "point for its image.")
layer = state.block_choice(run, st.sidebar)
points = state.table(run, "umap")
if points is not None and "layer" in points and f"block.{layer}" not in set(points.layer):
    points = None
if points is None:
    st.info(f"No UMAP of `block.{layer}` in `{run.name}/analysis/umap.parquet` yet.")
    timesteps = st.multiselect("timesteps", state.DEFAULT_TIMESTEPS, default=[0, 200, 500, 800])
    if st.button("Compute UMAP", type="primary", disabled=not timesteps):
        umap_for_run(run, layer, sorted(timesteps), N_IMAGES, progress=state.progress_bar("UMAP"))
        st.rerun()
    st.stop()

timesteps = sorted(int(t) for t in points.timestep.unique())
t = st.select_slider("timestep t", timesteps, value=timesteps[0])
train_images, _, classes = state.probe_images(str(run), int(points["index"].max()) + 1)  # its n_images
fig, data = umap_grid(points[points.timestep == t].assign(label=lambda d: d.label.map(lambda y: classes[y])), cols=1)
left, right = st.columns([3, 1])
with left:
    event = st.plotly_chart(fig.update_layout(height=520, width=None, title=f"block.{layer}, t = {t}"), key="umap",
                            on_select="rerun", selection_mode="points")
with right:
    chosen = event.selection.points if event and event.selection else []
    if chosen:
        row = data[data.trace == chosen[0]["curve_number"]].iloc[chosen[0]["point_index"]]
        i = int(row["index"])
        st.image(train_images[i], caption=f"image {i} · class {row['label']}", width=160, clamp=True)
    else:
        st.caption("Click (or box-select) a point to see its image.")
