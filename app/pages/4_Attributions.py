"""Attributions: integrated-gradient maps of a probe's class logit w.r.t. the clean image, across timesteps."""
from __future__ import annotations

import streamlit as st

from analysis.attribution import attribution_for_run
from analysis.figures import attribution_grid
from app import choices, state

N_IMAGES = 200
run = state.page_run("Attributions", "Which pixels of x₀ a linear probe's class logit rests on at each timestep: "
                                     "integrated gradients through x_t = q_sample(x₀, t, ε) with ε fixed "
                                     "(`analysis.attribution`).")
_, test_images, classes = state.probe_images(str(run), N_IMAGES)
held = state.stored_attributions(run)
left, right = st.columns([1, 3])
with left:
    image = st.selectbox("test image", choices.computed_first(range(len(test_images)), held.image_rows),
                         format_func=lambda i: choices.marked(f"image {i}", i in held.image_rows))
    st.image(test_images[image], width=120, clamp=True)
    held_classes = held.classes_of(image)
    target = st.selectbox("class", choices.computed_first(range(len(classes)), held_classes),
                          format_func=lambda k: choices.marked(classes[k], k in held_classes))
    layer = state.block_choice(run, computed=held.blocks_of(image, target),
                               preferred=choices.oracle_block(state.summary(run)))
    held_timesteps = held.timesteps_of(image, target, layer)
    timesteps = st.multiselect("timesteps", choices.computed_first(state.DEFAULT_TIMESTEPS, held_timesteps),
                               default=held_timesteps or [0, 300, 600],
                               format_func=lambda t: choices.marked(str(t), t in held_timesteps, choices.SHORT_MARK))
with right:
    if not timesteps:
        st.info("Choose at least one timestep.")
        st.stop()
    timesteps = sorted(timesteps)
    key = (str(run), int(image), int(target), tuple(timesteps), int(layer))
    maps = st.session_state.get("attributions", {})
    found = maps.get(key) or held.maps_for(image, target, layer, timesteps)
    if found is None:
        st.info("Integrated gradients for this image, class, block and timesteps are not computed yet.")
        if st.button("Compute attributions", type="primary"):
            with st.spinner("fitting probes and integrating gradients"):
                maps[key] = attribution_for_run(run, int(image), int(target), timesteps, int(layer), N_IMAGES)
            st.session_state["attributions"] = maps
            st.rerun()
        st.stop()
    attributions, x0 = found
    state.show(attribution_grid(attributions[:, None], timesteps, x0[None]), "maps", height=260)
