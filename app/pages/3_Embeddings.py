"""Embeddings: a UMAP map of one block's pooled features at each timestep, coloured by class."""
from __future__ import annotations

import streamlit as st

from analysis.embedding import umap_for_run
from analysis.figures import umap_grid
from app import choices, state
from aselect_core.diffusion import as_time
from aselect_core.model import LayerKey

N_IMAGES = 300
run = state.page_run("Embeddings", "UMAP (`analysis.embedding.umap_trajectory`) of a block's mean-pooled features of "
                                   "the same images at each timestep, each map aligned to the previous one. Click a "
                                   "point for its image.")
points = state.table(run, "umap")
held = choices.umap_blocks(points)
layer = state.block_choice(run, st.sidebar, held, choices.oracle_block(state.summary(run)))
if layer not in held:
    stored = f" (it holds {', '.join(f'`block.{b}`' for b in held)}, which computing replaces)" if held else ""
    st.info(f"No UMAP of `block.{layer}` in `{run.name}/analysis/umap.parquet` yet{stored}.")
    timesteps = st.multiselect("timesteps", state.DEFAULT_TIMESTEPS, default=[0, 200, 500, 800])
    if st.button("Compute UMAP", type="primary", disabled=not timesteps):
        umap_for_run(run, layer, sorted(timesteps), N_IMAGES, progress=state.progress_bar("UMAP"))
        st.rerun()
    st.stop()

points = points[points.layer == str(LayerKey.block(layer))]
timesteps = sorted(as_time(t) for t in points.timestep.unique())
axis = state.time_axis(run)
t = st.select_slider(axis.name, timesteps, value=timesteps[0], format_func=axis.label)
train_images, _, classes = state.probe_images(str(run), int(points["index"].max()) + 1)  # its n_images
fig, data = umap_grid(points[points.timestep == t].assign(label=lambda d: d.label.map(lambda y: classes[y])), cols=1)
left, right = st.columns([3, 1])
with left:
    event = st.plotly_chart(state.framed(fig.update_layout(height=520, width=None, title=f"block.{layer}, t = {t}")),
                            key="umap", on_select="rerun", selection_mode="points")
with right:
    chosen = event.selection.points if event and event.selection else []
    if chosen:
        row = data[data.trace == chosen[0]["curve_number"]].iloc[chosen[0]["point_index"]]
        i = int(row["index"])
        st.image(train_images[i], caption=f"image {i} · class {row['label']}", width=160, clamp=True)
    else:
        st.caption("Click (or box-select) a point to see its image.")
