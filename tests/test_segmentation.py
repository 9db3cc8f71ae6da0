"""Segmentation over timestep × layer: scoring on exact masks, bootstrap CIs, the shapes grid beats chance beside a
raw-pixel baseline on the same images and noise, artefacts and summary, task routing, the figure."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from analysis.features import probe_splits, resolve_source
from analysis.figures import FIGURES, segmentation_heatmap
from analysis.pipeline import analyze_run, resolve_tasks
from analysis.probe import mean_iou, patch_labels
from analysis.segmentation import (PIXELS, SEGMENTATION_COLUMNS, StoredMasks, bootstrap_scores, confusion,
                                   mask_rgb, patch_ceiling, patchify, scores, segmentation_cell,
                                   segmentation_grid, upsample)
from app.serve import DEMO_RUNS

pytestmark = pytest.mark.usefixtures("one_thread")
SHAPES_RUN = DEMO_RUNS / "shapes-learned"  # read only: the grid is computed in memory, nothing is written there


def test_patchify_and_upsample_follow_the_token_order():
    g = torch.Generator().manual_seed(0)
    patch_cls = torch.randint(0, 3, (5, 2, 4), generator=g)  # (n, h, w)
    masks = patch_cls.repeat_interleave(3, 1).repeat_interleave(2, 2)  # (n, 6, 8)
    patches = patchify(masks[:, None].float(), (2, 4))  # (n, 8, 6)
    assert patches.shape == (5, 8, 6)
    assert torch.equal(patches[..., 0].long(), patch_labels(masks, (2, 4)))  # constant patches: row-major order
    assert np.array_equal(upsample(patch_cls.flatten(1).numpy(), (2, 4), (6, 8)), masks.numpy())
    assert patch_ceiling(masks, (2, 4)) == 1.0  # patch-constant masks: a per-patch probe can be exact
    assert patch_ceiling(masks, (1, 1)) < 1.0


def test_scores_match_mean_iou_and_the_bootstrap_brackets_them():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 3, (40, 4, 4))
    pred = np.where(rng.random((40, 4, 4)) < 0.7, target, rng.integers(0, 3, (40, 4, 4)))
    conf = confusion(pred, target, 3)  # (40, 3, 3)
    assert conf.shape == (40, 3, 3) and conf.sum() == pred.size
    miou, acc = scores(conf.sum(axis=0))
    assert miou == pytest.approx(mean_iou(pred, target)) and acc == pytest.approx((pred == target).mean())
    ci = bootstrap_scores(conf, n_boot=300, seed=1)
    for name in ("miou", "pixel_accuracy"):
        assert ci[f"{name}_ci_low"] < ci[name] < ci[f"{name}_ci_high"]
    assert ci == bootstrap_scores(conf, n_boot=300, seed=1)  # seeded
    assert ci["miou_ci_low"] != bootstrap_scores(conf, n_boot=300, seed=2)["miou_ci_low"]


def test_shapes_grid_beats_chance_beside_pixels_on_the_same_images_and_noise():
    source = resolve_source(SHAPES_RUN)
    seg = segmentation_grid(source, "shapes", [0, 900], [0], n_images=64, seed=0, n_show=3, n_boot=200)
    rows = seg.rows
    assert list(rows.columns) == SEGMENTATION_COLUMNS and len(rows) == 4  # (block.0, pixels) × 2 timesteps
    assert list(rows.layer) == ["block.0", PIXELS, "block.0", PIXELS]
    for name in ("miou", "pixel_accuracy"):
        assert ((rows[f"{name}_ci_low"] <= rows[name]) & (rows[name] <= rows[f"{name}_ci_high"])).all()
    splits = probe_splits("shapes", 64, 0, None, source.model.config["input_size"])
    test_masks = splits.test.masks.numpy()
    chance, _ = scores(confusion(np.zeros_like(test_masks), test_masks, int(test_masks.max()) + 1).sum(axis=0))
    best = rows[rows.layer == "block.0"].iloc[0]  # t = 0
    assert best.miou_ci_low > chance  # the DiT's tokens locate the shape better than "all background"
    assert rows.miou.max() <= seg.patch_ceiling < 1.0  # 4×4 patches cannot trace a shape's outline exactly
    grid = (4, 4)  # 16 px / patch 4
    for t, row in rows[rows.layer == PIXELS].set_index("timestep").iterrows():
        again, _ = segmentation_cell(t, PIXELS, patchify(splits.noisy("train", t, source.schedule), grid),
                                     patchify(splits.noisy("test", t, source.schedule), grid), splits.train.masks,
                                     splits.test.masks, grid, 0, 200)
        assert row.miou == again["miou"] and row.pixel_accuracy == again["pixel_accuracy"]
    assert seg.pred.shape == (4, 3, 16, 16) and seg.masks.shape == (3, 16, 16) and seg.images.shape == (3, 3, 16, 16)
    assert np.array_equal(seg.masks, test_masks[:3])


def test_analyze_run_segmentation_only_writes_artefacts_and_keeps_the_summary(tiny_run, tmp_path):
    run = tiny_run(tmp_path / "r", data="shapes")
    (run / "analysis").mkdir(exist_ok=True)
    (run / "analysis" / "summary.json").write_text(json.dumps({"best": {"timestep": 0, "layer": "block.0"}}))
    paths = analyze_run(run, timesteps=[0, 500], layers=[0, 1], n_images=24, tasks=["segmentation"],
                        progress=False)
    assert set(paths) == {"segmentation", "segmentation_masks", "summary"}
    assert not (run / "analysis" / "probe.parquet").exists()  # classification was not run
    rows = pd.read_parquet(paths["segmentation"])
    summary = json.loads(paths["summary"].read_text())
    assert summary["best"] == {"timestep": 0, "layer": "block.0"}
    seg = summary["segmentation"]
    dit = rows[rows.layer != PIXELS]
    assert seg["best_miou"] == dit.miou.max() and seg["pixel_baseline_miou"] == rows[rows.layer == PIXELS].miou.max()
    assert seg["miou_ci_low"] <= seg["best_miou"] <= seg["miou_ci_high"] and seg["patch_ceiling_miou"] <= 1.0
    assert (seg["timestep"], seg["layer"]) in set(zip(dit.timestep, dit.layer))
    stored = StoredMasks.read(paths["segmentation_masks"])
    assert len(stored.cells) == len(rows) == 6 and stored.at(500, "block.1").shape == (4, 8, 8)
    assert stored.at(123, "block.1") is None
    assert mask_rgb(stored.masks).shape == (4, 8, 8, 3)
    analyze_run(run, timesteps=[0, 500], layers=[0, 1], n_images=24, tasks=["classification"], progress=False,
                methods=("oracle",), embedding=False, random_init=False, immse_images=8)
    assert json.loads(paths["summary"].read_text())["segmentation"] == seg  # classification alone keeps it


def test_tasks_default_to_segmentation_where_masks_exist():
    assert resolve_tasks(None, "shapes", 8) == ("classification", "segmentation")
    assert resolve_tasks(None, "digits", 8) == ("classification",)
    assert resolve_tasks(["segmentation", "classification"], "digits", 8) == ("classification", "segmentation")
    with pytest.raises(ValueError, match=r"^tasks: expected a non-empty subset"):
        resolve_tasks(["detection"], "shapes", 8)
    with pytest.raises(ValueError, match=r"^data: digits has no segmentation masks"):
        segmentation_grid(resolve_source(SHAPES_RUN), "digits", [0], [0], n_images=8)


def test_cli_tasks_flag():
    from app.cli import build_parser

    assert build_parser().parse_args(["analyze", "r", "--tasks", "classification,segmentation"]).tasks == [
        "classification", "segmentation"]


def test_segmentation_heatmap_marks_the_best_cell():
    rows = pd.DataFrame([{"timestep": t, "layer": layer, "miou": m, "miou_ci_low": m - 0.05, "miou_ci_high": m + 0.05}
                         for t, layer, m in [(0, "block.0", 0.3), (0, "block.1", 0.5), (100, "block.0", 0.2),
                                             (100, "block.1", 0.4), (0, PIXELS, 0.15), (100, PIXELS, 0.1)]])
    fig, data = segmentation_heatmap(rows)
    assert fig.data[0].type == "heatmap" and fig.data[1].x.tolist() == [0] and fig.data[1].y.tolist() == ["block.1"]
    assert "0.500 [0.450, 0.550]" in fig.layout.title.text and "pixels 0.150" in fig.layout.title.text
    assert PIXELS not in set(data.layer)
    assert "segmentation_heatmap" in FIGURES


def test_explorer_shows_segmentation_and_the_stored_masks(tiny_run, tmp_path, monkeypatch):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from app.serve import RUNS_ENV

    run = tiny_run(tmp_path / "runs" / "s", data="shapes")
    paths = analyze_run(run, timesteps=[0, 500], layers=[0, 1], n_images=40, immse_images=8,
                        methods=("oracle", "hfr"), embedding=False, random_init=False, progress=False)
    assert {"probe", "segmentation", "segmentation_masks"} <= set(paths)  # shapes has masks: both tasks
    summary = json.loads(paths["summary"].read_text())
    assert {"best", "segmentation"} <= set(summary)
    monkeypatch.setenv(RUNS_ENV, str(tmp_path / "runs"))
    st.cache_data.clear()
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app" / "pages" / "1_Timestep_explorer.py"),
                           default_timeout=120).run()
    assert not at.exception and "segmentation mIoU" in at.radio[0].options
    at.radio[0].set_value("segmentation mIoU").run()
    assert not at.exception, at.exception
    layer = next(s for s in at.selectbox if s.label == "layer of the predicted masks")
    assert layer.value == summary["segmentation"]["layer"]
    assert len(at.get("plotly_chart")) == 3 and len(at.get("image")) >= 5  # + images, true and predicted masks
