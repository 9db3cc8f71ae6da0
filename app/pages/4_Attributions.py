"""Attributions: integrated-gradient maps of a probe's class logit w.r.t. the clean image, across timesteps."""
from __future__ import annotations

import streamlit as st

from analysis.attribution import attribution_for_run
from analysis.figures import attribution_grid
from app import state

N_IMAGES = 200
run = state.page_run("Attributions", "Which pixels of x₀ a linear probe's class logit rests on at each timestep: "
                                     "integrated gradients through x_t = q_sample(x₀, t, ε) with ε fixed "
                                     "(`analysis.attribution`).")
_, test_images, classes = state.probe_images(str(run), N_IMAGES)
left, right = st.columns([1, 3])
with left:
    image = st.number_input("test image", 0, len(test_images) - 1, 0)
    st.image(test_images[image], width=120, clamp=True)
    target = st.selectbox("class", range(len(classes)), format_func=lambda k: classes[k])
    layer = state.block_choice(run)
    timesteps = st.multiselect("timesteps", state.DEFAULT_TIMESTEPS, default=[0, 300, 600])
with right:
    if not timesteps:
        st.info("Choose at least one timestep.")
        st.stop()
    timesteps = sorted(timesteps)
    key = (str(run), int(image), int(target), tuple(timesteps), int(layer))
    maps = st.session_state.get("attributions", {})
    if key not in maps:
        st.info("Integrated gradients for this image, class, block and timesteps are not computed yet.")
        if st.button("Compute attributions", type="primary"):
            with st.spinner("fitting probes and integrating gradients"):
                maps[key] = attribution_for_run(run, int(image), int(target), timesteps, int(layer), N_IMAGES)
            st.session_state["attributions"] = maps
            st.rerun()
        st.stop()
    attributions, x0 = maps[key]
    state.show(attribution_grid(attributions[:, None], timesteps, x0[None]), "maps", height=260)
