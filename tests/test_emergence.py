"""The emergence bench's analysis: log-spaced checkpoints, per-checkpoint probe grids beside both baselines on the
same images, the per-checkpoint summary (margins, interior peak) and its figures."""
from __future__ import annotations

import pandas as pd
import pytest

from analysis.emergence import (best_layer_curves, checkpoint_budgets, continued, emergence_grid, emergence_summary,
                                log_spaced)
from analysis.figures import emergence_budget, emergence_curves

pytestmark = pytest.mark.usefixtures("one_thread")


def test_log_spaced_keeps_doubling_budgets_and_the_last():
    assert log_spaced([250 * i for i in range(1, 25)]) == [250, 500, 1000, 2000, 4000, 6000]
    assert log_spaced([7, 3, 5]) == [3, 7] and log_spaced([4]) == [4] and log_spaced([]) == []


@pytest.fixture(scope="module")
def run(tiny_run):
    return tiny_run(steps=4, checkpoint_every=2, keep_last=10)


def test_checkpoint_budgets_read_the_counted_passes(run):
    budgets = checkpoint_budgets(run)
    assert budgets.step.tolist() == [2, 4]
    assert budgets.image_passes.tolist() == [3 * 16 * 2, 3 * 16 * 4]  # 3·B per uniform step


def test_emergence_grid_and_summary(run):
    grid = emergence_grid(run, [0, 900], [1, 5], n_images=40, progress=False)
    assert set(grid.model) == {"dit", "pixels", "random-init"}
    dit = grid[grid.model == "dit"]
    assert sorted(dit.step.unique()) == [2, 4] and len(dit) == 2 * 2 * 2  # checkpoints × timesteps × layers
    assert set(grid[grid.model == "pixels"].layer) == {"pixels"} and len(grid[grid.model != "dit"]) == 2 + 4
    assert (grid.n_test == grid.n_test.iloc[0]).all()  # one test set for DiT and baselines
    with pytest.raises(ValueError, match=r"^steps: \[3\] are not checkpoints of"):
        emergence_grid(run, [0], [1], n_images=40, steps=[3], progress=False)

    summary = emergence_summary(grid)
    assert summary.step.tolist() == [2, 4] and summary.image_passes.tolist() == [96, 192]
    best = dit[dit.step == 4].accuracy.max()
    last = summary.iloc[-1]
    assert last.accuracy == best and last.accuracy_ci_low <= best <= last.accuracy_ci_high
    assert last.pixels == grid[grid.model == "pixels"].accuracy.max()
    assert last.margin_random_init_points == pytest.approx(100 * (best - last.random_init))
    assert last.beats_both_by_5 == (best - max(last.pixels, last.random_init) >= 0.05)

    curves = best_layer_curves(grid)
    assert list(dict.fromkeys(curves.series))[:2] == ["pixels", "random-init"]  # baselines first, then budgets
    fig, data = emergence_curves(curves)
    assert {"96 passes · " + curves[curves.step == 2].layer.iloc[0], "pixels · pixels"} <= set(data.series)
    fig, data = emergence_budget(summary.assign(dataset="digits"))
    assert fig.layout.xaxis.type == "log" and len(data[data.series == "digits"]) == 2


def test_interior_peak_needs_a_gain_beyond_the_ci():
    def cells(acc_at_0, acc_at_500, low_at_500):
        return pd.DataFrame({"model": "dit", "step": 1, "image_passes": 3, "timestep": [0, 500], "layer": "block.0",
                             "accuracy": [acc_at_0, acc_at_500], "accuracy_ci_low": [acc_at_0 - 0.05, low_at_500],
                             "accuracy_ci_high": [acc_at_0 + 0.05, acc_at_500 + 0.05]})

    def summary(grid):
        baselines = grid.iloc[:1].assign(model="pixels", accuracy=0.1), grid.iloc[:1].assign(model="random-init")
        return emergence_summary(pd.concat([grid, *baselines])).interior_peak.iloc[0]

    assert summary(cells(0.60, 0.80, 0.70))  # best at t = 500, and its CI is above t = 0
    assert not summary(cells(0.60, 0.62, 0.55))  # within the CI: not a peak
    assert not summary(cells(0.80, 0.60, 0.55))  # best at the smallest t


def test_a_continued_run_extends_the_stored_grid_only_when_its_pixel_baseline_is_the_same(run):
    stored = emergence_grid(run, [0, 900], [1], n_images=40, steps=[2], progress=False)
    new = emergence_grid(run, [0, 900], [1], n_images=40, steps=[4], progress=False)  # as a continuation would
    grid = continued(stored, new)
    assert sorted(grid[grid.model == "dit"].step.unique()) == [2, 4]
    assert len(grid) == len(stored) + len(new[new.model == "dit"])  # the baselines once
    assert emergence_summary(grid).step.tolist() == [2, 4]
    other = new.assign(accuracy=new.accuracy.where(new.model != "pixels", new.accuracy + 0.01))
    with pytest.raises(ValueError, match="raw-pixel baseline differs from the stored one"):
        continued(stored, other)
    with pytest.raises(ValueError, match=r"steps \[2\] are in the stored grid already"):
        continued(stored, stored)
