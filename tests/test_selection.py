"""Selection methods on a briefly trained tiny DiT: fields, regret vs the oracle, counted costs, the oracle
cache, the HFR-accuracy correlation, analyze_run's files, and one-line errors."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from analysis.pipeline import analyze_run
from analysis.registry import embedding_timesteps
from analysis.selection import (METHODS, Selection, default_timesteps, hfr_accuracy_correlation, load_oracle,
                                select_timestep)
from aselect_core.train import RunDir

TS = [0, 300, 600, 900]
ARGS = dict(timesteps=TS, layer=[1, 3], n_images=60, seed=0)
OPTIONS = {"oracle": {}, "hfr": {"hfr_images": 16}, "mi": {"mi_images": 40}, "coarse-to-fine": {"coarse": 2}}


@pytest.fixture(scope="session")
def run(tiny_run):
    """DiT-T/2 on 8×8 digits: a 4×4 patch grid, so HFR has frequencies to tell apart. No EMA lag, a high
    learning rate: ten steps move the blocks off their adaLN-Zero identity init."""
    return tiny_run(model="DiT-T/2", steps=10, lr=2e-3, ema_decay=0.0)


@pytest.fixture(scope="session")
def selections(run):
    return {m: select_timestep(run, method=m, **ARGS, **OPTIONS[m]) for m in OPTIONS}


def test_methods_return_consistent_fields_and_regret_against_the_oracle(selections):
    oracle = selections["oracle"]
    cells = oracle.grid
    assert len(cells) == len(TS) * 2 and set(cells.layer) == {"block.1", "block.3"}
    assert oracle.accuracy_at_choice == oracle.oracle_accuracy == cells.accuracy.max() and oracle.regret == 0
    assert oracle.cost_image_passes == (60 + 30) * len(TS) and oracle.cost_ratio == 1
    for name, sel in selections.items():
        assert isinstance(sel, Selection) and sel.method == name
        assert sel.timestep in TS and sel.layer in ("block.1", "block.3")
        assert sel.oracle_accuracy == oracle.oracle_accuracy and sel.regret >= 0
        expected = cells[(cells.timestep == sel.timestep) & (cells.layer == sel.layer)].accuracy.iloc[0]
        assert sel.accuracy_at_choice == expected
        assert sel.regret == pytest.approx(100 * (sel.oracle_accuracy - expected))
        assert sel.cost_ratio == pytest.approx(oracle.cost_image_passes / sel.cost_image_passes)
        assert sel.wall_seconds > 0 and json.loads(sel.row()["details"]) == sel.details


def test_hfr_is_one_cheap_pass_and_scores_the_argmax(selections):
    hfr = selections["hfr"]
    assert hfr.cost_image_passes == 16 * len(TS) and hfr.cost_ratio > 1
    assert hfr.score == hfr.grid.hfr_mean.max()
    assert 0 <= hfr.grid.hfr_mean.min() and hfr.grid.hfr_mean.max() <= 1 and hfr.grid.hfr_mean.nunique() > 1
    assert selections["mi"].cost_image_passes == 40 * len(TS)
    c2f = selections["coarse-to-fine"]
    assert c2f.details["coarse"] == [0, 900] and set(c2f.details["fine"]) <= {300, 600}


def test_hfr_min_mode_budget_and_correlation(run, selections):
    low = select_timestep(run, method="hfr", hfr_mode="min", budget=40, **ARGS, hfr_images=64)
    assert low.details["hfr_images"] == 10 and low.cost_image_passes == 40
    assert low.score == low.grid.hfr_mean.min()
    rho, p = hfr_accuracy_correlation(selections["oracle"].grid, selections["hfr"].grid)
    assert -1 <= rho <= 1 and 0 <= p <= 1
    flat = pd.DataFrame({"timestep": range(4), "layer": "block.0", "hfr_mean": [.1, .2, .3, .4], "accuracy": 0.5})
    assert all(math.isnan(v) for v in hfr_accuracy_correlation(flat))
    synthetic = pd.DataFrame({"timestep": range(5), "layer": "block.0", "hfr_mean": [.1, .2, .3, .4, .5],
                              "accuracy": [.9, .8, .7, .6, .5]})
    assert hfr_accuracy_correlation(synthetic)[0] == pytest.approx(-1.0)


def test_oracle_grid_is_kept_in_the_run_dir_and_reused(run, selections):
    grid, info = load_oracle(RunDir(run))
    assert info["cost_image_passes"] == selections["oracle"].cost_image_passes
    again = select_timestep(run, method="oracle", **ARGS)
    assert (again.timestep, again.layer, again.wall_seconds) == (
        selections["oracle"].timestep, selections["oracle"].layer, selections["oracle"].wall_seconds)
    pd.testing.assert_frame_equal(again.grid, grid)


def test_analyze_run_refuses_misspelt_or_bad_options(run):
    with pytest.raises(ValueError, match=r"imse_images: not an option of methods \[.*\] nor of the analyses "
                                         r"\['immse', 'random_init', 'umap', 'attribution', 'generation'\]; "
                                         r"expected one of \[.*'immse_images'.*\]"):
        analyze_run(run, imse_images=8, progress=False)
    with pytest.raises(ValueError, match="attribution_images: expected an integer >= 0, got -1"):
        analyze_run(run, attribution_images=-1, progress=False)
    with pytest.raises(ValueError, match="embedding: expected true or false, got 'no'"):
        analyze_run(run, embedding="no", progress=False)


def test_every_registered_analysis_names_an_artefact_and_options():
    from dataclasses import fields

    from analysis.registry import ANALYSES, analysis_fields
    from aselect_core.train.rundir import ARTEFACTS

    assert all(a.artefact in ARTEFACTS for a in ANALYSES.values())
    assert analysis_fields() == {f.name: n for n, a in ANALYSES.items() for f in fields(a.options)}
    assert set(analysis_fields()) == {"immse_images", "random_init", "embedding", "attribution_images",
                                      "generation_samples"}


def test_analyze_run_writes_every_table(run):
    paths = analyze_run(run, timesteps=[0, 500, 900], layers=[2], n_images=40, progress=False, immse_images=16,
                        hfr_images=16, mi_images=30)
    assert set(paths) == {"probe", "hfr", "mi", "immse", "selection", "random_init", "summary", "umap"}
    probe = pd.read_parquet(paths["probe"])
    assert set(probe.layer) == {"block.2", "pixels"} and len(probe) == 6
    assert list(pd.read_parquet(paths["selection"]).method) == list(METHODS)
    assert list(pd.read_parquet(paths["immse"]).timestep) == [0, 500, 900]
    summary = json.loads(paths["summary"].read_text())
    assert summary["best"]["layer"] == "block.2" and summary["methods"]["oracle"]["regret_points"] == 0
    assert 0 <= summary["pixel_baseline"]["best_accuracy"] <= 1
    best = summary["best"]
    assert best["accuracy_ci_low"] <= best["accuracy"] <= best["accuracy_ci_high"]
    runner_up = probe[probe.layer == "block.2"].accuracy.nlargest(2).iloc[1]  # 3 cells: a runner-up exists
    assert summary["best"]["runner_up"]["accuracy"] == runner_up
    assert summary["best"]["runner_up"]["within_ci"] == (runner_up >= best["accuracy_ci_low"])
    random_init = pd.read_parquet(paths["random_init"])  # same cells as the DiT grid, a random-gates DiT
    assert len(random_init) == 3 and set(random_init.layer) == {"block.2"} and set(random_init.init) == {"random-gates"}
    assert summary["random_init_baseline"]["best_accuracy"] == random_init.accuracy.max()
    umap = pd.read_parquet(paths["umap"])  # the oracle-best block's UMAP over the (here all 3) timesteps
    assert set(umap.layer) == {summary["best"]["layer"]} and sorted(umap.timestep.unique()) == [0, 500, 900]
    assert len(umap) == 3 * 40 and umap.label.notna().all()
    assert set(analyze_run(run, timesteps=[0, 500], layers=[2], n_images=40, progress=False, immse_images=16,
                           methods=("oracle",), embedding=False, random_init=False)) == {
        "probe", "hfr", "selection", "immse", "summary"}
    paths = analyze_run(run, timesteps=[0, 500], layers=[2], n_images=40, progress=False, immse_images=16,
                        methods=("oracle",), embedding=False, random_init=False, attribution_images=2)
    maps = np.load(paths["attribution"])  # two test images at the oracle-best block (the only one here)
    assert maps["attributions"].shape[:2] == (2, 2) and maps["layer"] == 2


def test_embedding_timesteps_are_evenly_spaced_candidates():
    assert embedding_timesteps(default_timesteps(1000)) == [0, 200, 400, 550, 750, 950]
    assert embedding_timesteps([900, 0, 500]) == [0, 500, 900]


def test_default_timesteps():
    assert default_timesteps(1000) == list(range(0, 1000, 50))
    assert default_timesteps(10, 20) == list(range(10))


def test_one_line_errors(run):
    with pytest.raises(ValueError, match=r"^method: expected one of \['coarse-to-fine', 'hfr', 'mi', 'oracle'\]"):
        select_timestep(run, method="random")
    with pytest.raises(ValueError, match=r"^timesteps: expected integers in \[0, 1000\), got \[-1\]"):
        select_timestep(run, timesteps=[-1, 5])
    with pytest.raises(ValueError, match=r"^layer: expected a block index in \[-6, 6\) or 'block.i', got 'block.9'"):
        select_timestep(run, layer="block.9")
    with pytest.raises(ValueError, match=r"^hfr_mode: expected 'max' or 'min'"):
        select_timestep(run, method="hfr", hfr_mode="median", timesteps=[0], n_images=10, hfr_images=4)
    with pytest.raises(ValueError, match=r"^budget: expected a positive"):
        select_timestep(run, budget=0)
    with pytest.raises(ValueError, match=r"^hfr_mdoe: not an option of method 'hfr'; expected one of "
                                         r"\['hfr_mode', 'hfr_images', 'cutoff', 'remove_mean'\]$"):
        select_timestep(run, method="hfr", hfr_mdoe="min")
    with pytest.raises(ValueError, match=r"^hfr_images: not an option of method 'oracle'"):
        select_timestep(run, method="oracle", hfr_images=16)
    with pytest.raises(ValueError, match=r"^coarse: expected at least 2"):
        select_timestep(run, method="coarse-to-fine", coarse=1)
    assert math.isnan(Selection("x", 0, "block.0", 0.0, 1, 0.0).regret)


def test_regret_only_against_an_oracle_of_the_same_setting(run, selections):
    select_timestep(run, method="oracle", **ARGS)  # the stored oracle is ARGS' again (other tests replace it)
    other = select_timestep(run, method="hfr", **{**ARGS, "timesteps": [0, 300], "seed": 1}, hfr_images=4)
    assert math.isnan(other.regret) and math.isnan(other.accuracy_at_choice)
    assert other.details["oracle_mismatch"] == ["timesteps", "seed"]
    same = select_timestep(run, method="hfr", **ARGS, hfr_images=4, remove_mean=False)
    assert "oracle_mismatch" not in same.details and not math.isnan(same.regret)
    assert same.details["remove_mean"] is False
    assert not np.allclose(same.grid.hfr_mean, select_timestep(run, method="hfr", **ARGS, hfr_images=4).grid.hfr_mean)
