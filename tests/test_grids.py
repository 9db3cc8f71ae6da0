"""The grid registry (analysis.grids): typed, validated options, one table format with a 95% interval per
measure, artefacts RunDir resolves; the selection methods compute through it and the oracle reports its runner-up."""
from __future__ import annotations

from dataclasses import fields

import numpy as np
import pandas as pd
import pytest
import torch

from analysis.features import FeatureBank
from analysis.grids import GRIDS, ci_columns, grid_options, run_grid
from analysis.hfr import hfr_grid
from analysis.probe import best_cell, wilson_interval
from analysis.selection import METHODS, runner_up
from aselect_core.train.rundir import ARTEFACTS


def planted_bank(n: int = 240, seed: int = 0) -> FeatureBank:
    """4 classes over 4x4 token maps: block.1 carries the label in every token, block.2 is noise; a third test."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 4
    signal = torch.nn.functional.one_hot(labels, 8).float() * 3.0  # (n, 8)
    tokens = {(0, "block.1"): signal[:, None, :] + torch.randn(n, 16, 8, generator=g),
              (0, "block.2"): torch.randn(n, 16, 8, generator=g)}
    return FeatureBank(pooled={k: v.mean(1) for k, v in tokens.items()}, labels=labels,
                       is_test=torch.arange(n) >= 2 * n // 3, image_rows=torch.arange(n), grid=(4, 4),
                       timesteps=[0], layers=["block.1", "block.2"], image_passes=n, wall_seconds=0.0, tokens=tokens)


def test_every_grid_declares_options_an_artefact_and_measures_with_intervals():
    bank = planted_bank()
    for name, grid in GRIDS.items():
        assert grid.artefact in ARTEFACTS and grid.options.__dataclass_params__.frozen
        df = run_grid(name, bank, mi_method="ksg", mi_subsamples=4) if name == "label_mi" else run_grid(name, bank)
        assert df[["timestep", "layer"]].values.tolist() == [[0, "block.1"], [0, "block.2"]]
        for measure, declared in grid.measures.items():
            low, high = declared.ci
            assert ci_columns(measure) == (low, high) and declared.label
            assert ((df[low] <= df[measure]) & (df[measure] <= df[high])).all(), (name, measure)


def test_probe_grid_knn_accuracy_has_its_wilson_interval():
    df = run_grid("probe", planted_bank())
    sig = df.iloc[0]
    assert sig.accuracy > 0.9 and sig.knn_accuracy > 0.9
    assert (sig.knn_ci_low, sig.knn_ci_high) == pytest.approx(wilson_interval(sig.knn_accuracy, int(sig.n_test)))
    no_knn = run_grid("probe", planted_bank(), knn=False)
    assert no_knn[["knn_accuracy", "knn_ci_low", "knn_ci_high"]].isna().all(axis=None)


def test_hfr_grid_interval_is_the_mean_plus_minus_1_96_standard_errors():
    bank = planted_bank()
    df = run_grid("hfr", bank, cutoff=0.3, remove_mean=False)
    raw = hfr_grid(bank, cutoff=0.3, remove_mean=False)
    pd.testing.assert_frame_equal(df[raw.columns], raw)  # the raw function's table, intervals added
    np.testing.assert_allclose(df.hfr_ci_high - df.hfr_mean, 1.959963984540054 * raw.hfr_se)
    np.testing.assert_allclose(df.hfr_mean - df.hfr_ci_low, 1.959963984540054 * raw.hfr_se)


@pytest.mark.parametrize("name, kw, message", [
    ("hfr", {"cutof": 0.3}, r"^cutof: not an option of grid 'hfr'; expected one of \['cutoff', 'remove_mean'\]$"),
    ("probe", {"pooling": "max"}, r"^pooling: expected one of \['flatten', 'grid2', 'grid4', 'mean'\], got 'max'"),
    ("probe", {"knn": "yes"}, r"^knn: expected true or false, got 'yes'"),
    ("label_mi", {"mi_method": "kde"}, r"^mi_method: expected one of \[.*'ksg'.*\], got 'kde'"),
    ("label_mi", {"mi_subsamples": -1}, r"^mi_subsamples: expected an integer >= 0, got -1"),
    ("hfr", {"cutoff": 0.9}, r"^cutoff: expected a radius in \[0, 0.707\)"),
    ("nope", {}, r"^name: expected one of \['hfr', 'label_mi', 'probe'\], got 'nope'"),
])
def test_grid_options_are_checked_before_any_work(name, kw, message):
    with pytest.raises(ValueError, match=message):
        run_grid(name, None, **kw)  # no bank is touched: refused at entry


def test_method_options_carry_their_grid_options_with_the_same_defaults():
    for method in METHODS.values():
        grid_fields = {f.name: f.default for f in fields(GRIDS[method.grid].options)}
        own = {f.name: f.default for f in fields(method.options) if f.name in grid_fields}
        assert own and all(own[k] == grid_fields[k] for k in own), method
    hfr_options = METHODS["hfr"].options(cutoff=0.1, remove_mean=False, hfr_images=8)
    assert grid_options("hfr", hfr_options) == GRIDS["hfr"].options(cutoff=0.1, remove_mean=False)
    with pytest.raises(ValueError, match="^mi_method: expected one of"):  # a method's options check its grid's
        METHODS["mi"].options(mi_method="kde")


def test_oracle_reports_whether_its_runner_up_is_inside_the_ci():
    grid = pd.DataFrame({"timestep": [0, 0, 500], "layer": ["block.1", "block.2", "block.1"],
                         "accuracy": [0.80, 0.78, 0.60], "accuracy_ci_low": [0.75, 0.73, 0.55],
                         "accuracy_ci_high": [0.85, 0.83, 0.65], "n_test": [200] * 3})
    assert runner_up(grid) == {"runner_up": {"timestep": 0, "layer": "block.2", "accuracy": 0.78, "within_ci": True}}
    apart = grid.assign(accuracy=[0.80, 0.70, 0.60])
    assert runner_up(apart)["runner_up"]["within_ci"] is False
    older = apart.drop(columns=["accuracy_ci_low", "accuracy_ci_high"])  # a grid written before CIs: Wilson's
    low, high = wilson_interval(0.80, 200)
    assert (best_cell(older)["accuracy_ci_low"], best_cell(older)["accuracy_ci_high"]) == pytest.approx((low, high))
    assert best_cell(older)["runner_up"]["within_ci"] == (0.70 >= low)


def test_oracle_and_coarse_to_fine_selections_carry_their_runner_up(tiny_run):
    from analysis.selection import select_timestep

    run = tiny_run(steps=2)
    kw = dict(timesteps=[0, 500, 900], layer=1, n_images=24, progress=False)
    oracle = select_timestep(run, method="oracle", use_oracle_cache=False, **kw)
    assert oracle.details["runner_up"] == best_cell(oracle.grid)["runner_up"]
    assert oracle.details["runner_up"]["within_ci"] in (True, False)
    cached = select_timestep(run, method="oracle", **kw)  # reused from oracle.json: the same report
    assert cached.details["runner_up"] == oracle.details["runner_up"]
    c2f = select_timestep(run, method="coarse-to-fine", coarse=2, **kw)
    assert c2f.details["runner_up"] == best_cell(c2f.grid)["runner_up"]
