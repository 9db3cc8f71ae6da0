"""analysis.seed_table: mean ± std over seeds and cost relative to the same seed's Full row, against hand sums;
the LaTeX the seed prints; the CSV read back with one-line errors. Plus bench/budget.py's equal-cost arithmetic."""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.seed_table import FULL, TABLE_COLUMNS, load_seed_table, summarise, to_latex
from bench.budget import add_run_args, counted_passes, finish_args, steps_within


def records() -> pd.DataFrame:
    """Two seeds of Full, learned and raw pixels on one dataset."""
    rows = []
    for seed, (full, learned, pixels) in enumerate([(0.80, 0.84, 0.70), (0.82, 0.80, 0.72)]):
        rows += [
            {"method": FULL, "accuracy": full, "timestep": 100, "layer": "block.3", "steps": 800,
             "effective_timesteps": 1000.0, "image_passes": 153600},
            {"method": "A-SelecT (learned)", "accuracy": learned, "timestep": 200 + seed, "layer": "block.2",
             "steps": 744, "effective_timesteps": 90.0 + 10 * seed, "image_passes": 153552},
            {"method": "Raw pixels", "accuracy": pixels, "timestep": 0, "layer": "pixels", "steps": 0,
             "effective_timesteps": math.nan, "image_passes": 0}]
        for r in rows[-3:]:
            r.update(dataset="mnist5k", seed=seed)
    return pd.DataFrame(rows)


def test_summarise_against_hand_sums():
    summary = summarise(records())
    assert list(summary.columns) == TABLE_COLUMNS
    table = summary.set_index("method")
    assert list(table.index) == [FULL, "A-SelecT (learned)", "Raw pixels"]  # first-seen order, not sorted
    learned = table.loc["A-SelecT (learned)"]
    assert learned.accuracy_mean == pytest.approx(0.82)
    assert learned.accuracy_std == pytest.approx(np.std([0.84, 0.80], ddof=1))
    assert learned.effective_timesteps == pytest.approx(95.0) and learned.n_seeds == 2
    assert learned.cost_relative_to_full == pytest.approx(153552 / 153600)
    assert learned.best_cells == "t=200/block.2 t=201/block.2"
    assert learned.delta_vs_full_mean == pytest.approx(0.01)  # paired: +0.04 in seed 0, -0.02 in seed 1
    assert learned.delta_vs_full_std == pytest.approx(np.std([0.04, -0.02], ddof=1))
    assert table.loc[FULL].delta_vs_full_mean == 0
    pixels = table.loc["Raw pixels"]
    assert pixels.cost_relative_to_full == 0 and math.isnan(pixels.effective_timesteps)


def test_summarise_needs_a_full_row_per_seed():
    broken = records().query(f"not (method == '{FULL}' and seed == 1)")
    missing = r"no 'Full diffusion \(uniform\)' row for \(dataset, seed\) \[\('mnist5k', 1\)\]"
    with pytest.raises(ValueError, match=missing):
        summarise(broken)
    with pytest.raises(ValueError, match="records: expected columns .* missing \\['seed'\\]"):
        summarise(records().drop(columns="seed"))


def test_latex_is_the_seed_form():
    tex = to_latex(summarise(records()))
    assert "Effective timesteps" in tex and "Cost vs Full" in tex and "\\toprule" in tex
    assert "82.0 $\\pm$ 2.8" in tex and "& -- &" in tex and "100\\%" in tex
    assert "+1.0 $\\pm$ 4.2" in tex and "vs Full (points)" in tex  # learned's paired difference


def test_load_round_trip_and_errors(tmp_path):
    table = summarise(records())
    table.to_csv(tmp_path / "t.csv", index=False)
    pd.testing.assert_frame_equal(load_seed_table(tmp_path / "t.csv"), table, check_dtype=False)
    with pytest.raises(FileNotFoundError, match=r"nope.csv: no seed table there"):
        load_seed_table(tmp_path / "nope.csv")
    table.drop(columns="accuracy_std").to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match=r"bad.csv: expected columns .* missing \['accuracy_std'\]"):
        load_seed_table(tmp_path / "bad.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match="empty.csv: not a readable CSV"):
        load_seed_table(tmp_path / "empty.csv")


def test_equal_budget_arithmetic():
    learned = {"update_every": 4}
    assert counted_passes("uniform", {}, 64, 800) == 153600
    assert counted_passes("learned", learned, 64, 8) == 3 * 64 * 8 + 2 * 64 * 2  # updates at steps 0 and 4
    steps = steps_within(153600, "learned", learned, 64)
    assert counted_passes("learned", learned, 64, steps) <= 153600 < counted_passes("learned", learned, 64, steps + 1)
    assert steps_within(10, "uniform", {}, 64) == 1  # never zero steps


def test_quick_args_share_one_runs_dir():
    ap = argparse.ArgumentParser()
    add_run_args(ap)
    full, quick = finish_args(ap.parse_args([])), finish_args(ap.parse_args(["--quick"]))
    assert full.probe_timesteps == list(range(0, 1000, 50)) and full.runs.name == "policies"
    assert (quick.budget, quick.batch_size, quick.probe_timesteps) == (384, 16, [0, 500])
    assert quick.runs.name == "policies_quick"


@pytest.mark.parametrize("name", ["seed_table.csv", "seed_table_quick.csv"])
def test_committed_tables_load(name):
    """What bench/seed_table.py wrote into bench/results/ is a seed table the app and `aselect figures` read."""
    table = load_seed_table(Path(__file__).resolve().parents[1] / "bench" / "results" / name)
    assert FULL in set(table.method) and table.accuracy_mean.between(0, 1).all()
