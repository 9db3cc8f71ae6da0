"""Generation: what a run's DiT generates (DDIM / DDPM samples by seed and guidance scale), how well (the run's
analysis/generation.json), and the representation-vs-generation trade-off across runs."""
from __future__ import annotations

import streamlit as st

from analysis.figures import representation_vs_generation
from analysis.generation import SAMPLERS
from app import state
from aselect_core.train.rundir import PRETRAINED, RunDir

GUIDANCE = [1.0, 1.5, 2.0, 4.0]  # the classifier-free guidance scales the seed's question asks about
run = state.page_run("Generation", "Samples of the run's EMA DiT (`analysis.generation.sample`: the run's schedule, "
                                   "DDIM η = 0 or DDPM ancestral, the reference DiT's classifier-free guidance for "
                                   "conditional runs; the same seed gives the same images), the Fréchet distance, "
                                   "KID and precision/recall of its samples in a domain classifier's features "
                                   "(not Inception FID), and representation vs generation across runs.")
info = state.run_info(run)
if info.policy == PRETRAINED:
    st.info(f"`{run.name}` is a model analysed with `aselect analyze --model`; sampling works on run dirs (their "
            "EMA DiT and schedule).")
    st.stop()
config = RunDir(run).config()
left, right = st.columns([1, 3])
with left:
    sampler = st.radio("sampler", list(SAMPLERS), horizontal=True)
    steps = st.select_slider("steps", [10, 25, 50, 100], value=25)
    n = st.select_slider("images", [16, 36, 64], value=16)
    seed = int(st.number_input("seed", min_value=0, value=0, step=1))
    if config.conditional:
        cfg_scale = st.select_slider("guidance scale w", GUIDANCE, value=1.0)
        classes = state.probe_images(str(run), 2)[2]
        label = st.selectbox("class", range(len(classes)), format_func=lambda k: classes[k])
    else:
        cfg_scale, label = 1.0, None
        st.caption("Unconditional run: samples of the null class, no guidance.")
with right:
    key = state.stamp(RunDir(run).latest_path)
    grid = state.samples(str(run), key, n, steps, sampler, seed, cfg_scale, label)
    guided = f", class {label}, w = {cfg_scale:g}" if config.conditional else ""
    st.image(grid, caption=f"{n} {sampler} samples, {steps} steps, seed {seed}{guided}",
             width=min(640, 12 * grid.shape[1]))  # small images: upscaled, at most 640 px wide

st.subheader("Quality of its samples")
scores = state.generation_scores(run)
if scores is None:
    st.info(f"`{run.name}` has no analysis/generation.json: `aselect analyze {run} --generation 1000` samples and "
            "scores it.")
else:
    cols = st.columns(5)
    cols[0].metric("Fréchet distance", f"{scores['fd']:.2f}", f"floor {scores['fd_floor']:.2f} (train vs test)",
                   delta_color="off", delta_arrow="off")
    kid = scores["kid"]
    cols[1].metric("KID", f"{kid['mean']:.4f}", f"95% CI {kid['ci_low']:.4f}–{kid['ci_high']:.4f}",
                   delta_color="off", delta_arrow="off")
    cols[2].metric("precision / recall", f"{scores['precision']:.2f} / {scores['recall']:.2f}",
                   f"floor {scores['precision_floor']:.2f} / {scores['recall_floor']:.2f}", delta_color="off",
                   delta_arrow="off")
    if "outside" in scores:  # scored before it was recorded: rescoring adds it
        cols[3].metric("outside the data's norm", f"{scores['outside']:.1%}",
                       f"floor {scores['outside_floor']:.1%}", delta_color="off", delta_arrow="off",
                       help="share of samples whose features are longer than every test image's: off-manifold "
                            "samples that dominate FD and KID")
    extractor = scores["feature_extractor"]
    cols[4].metric("domain classifier", f"{extractor['test_accuracy']:.1%}", "its test accuracy", delta_color="off",
                   delta_arrow="off")
    st.caption(f"{scores['n_samples']} {scores['sampler']} samples ({scores['steps']} steps, seed {scores['seed']}, "
               f"w = {scores['cfg_scale']:g}) vs {scores['n_test']} test images, in the features of the workbench's "
               "domain classifier for this dataset (not Inception); the floor is the same score of train images.")

st.subheader("Representation vs generation, across runs")
runs = [r.path for r in state.list_runs() if r.error is None]
table = state.comparison(runs)
if table.fd.notna().any() and table.oracle_accuracy.notna().any():
    state.show(representation_vs_generation(table), "tradeoff", height=420)
else:
    st.info("No run has both a probe grid and analysis/generation.json yet: `aselect analyze RUN --generation 1000`.")
