"""bench/tradeoff.py's summary: mean ± std over seeds and the paired per-seed differences to uniform, against hand
sums (a seed without a uniform run is left out of the differences, not an error); --quick's one seed; and
bench/budget.py's --precision, which trains a run of its own name."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.tradeoff import METRICS, shown, summarise


def records() -> pd.DataFrame:
    """Two seeds of uniform and learned on one dataset, and one learned run of a seed uniform lacks."""
    rows = [("uniform", 0, 0.70, 80.0), ("learned", 0, 0.66, 83.0), ("uniform", 1, 0.74, 78.0),
            ("learned", 1, 0.72, 82.0), ("learned", 2, 0.60, 90.0)]
    return pd.DataFrame([{"dataset": "mnist5k", "policy": p, "method": p, "seed": s, "oracle_accuracy": acc,
                          "fd": fd, "fd_floor": 0.1, "kid": fd / 1000, "precision": 0.5, "recall": 0.25, "outside": 0.0,
                          "effective_timesteps": 1000.0 if p == "uniform" else 96.0, "classifier_accuracy": 0.9}
                         for p, s, acc, fd in rows])


def test_summarise_against_hand_sums():
    summary = summarise(records()).set_index("policy")
    assert list(summary.index) == ["uniform", "learned"]  # first-seen order
    learned = summary.loc["learned"]
    assert learned.n_seeds == 3 and learned.effective_timesteps == 96.0
    assert learned.oracle_accuracy_mean == pytest.approx(np.mean([0.66, 0.72, 0.60]))
    assert learned.fd_std == pytest.approx(np.std([83.0, 82.0, 90.0], ddof=1))
    # paired: seed 0 +3, seed 1 +4; seed 2 has no uniform run, so it is left out of the difference
    assert learned.fd_vs_uniform_mean == pytest.approx(3.5)
    assert learned.oracle_accuracy_vs_uniform_mean == pytest.approx(np.mean([-0.04, -0.02]))
    assert summary.loc["uniform"].fd_vs_uniform_mean == 0.0
    assert all(f"{m}_{s}" in summary for m in METRICS for s in ("mean", "std"))


def test_shown_formats_mean_pm_std():
    table = shown(summarise(records()))
    assert table.loc[1, "oracle acc %"] == "66.0 ± 6.0" and table.loc[1, "ΔFD vs uniform"] == "+3.50 ± 0.71"
    one_seed = shown(summarise(records()[records().seed == 0]))
    assert one_seed.loc[1, "oracle acc %"] == "66.0" and one_seed.loc[1, "ΔFD vs uniform"] == "+3.00"


def test_quick_keeps_one_seed_and_precision_names_its_own_run(monkeypatch, tmp_path):
    import bench.budget as budget
    from bench.tradeoff import parse_args

    args = parse_args(["--quick", "--runs", str(tmp_path)])
    assert args.seeds == [0] and args.samples == 40 and args.precision == "auto"
    trained = []
    monkeypatch.setattr(budget, "train", lambda config, progress: trained.append(config) or Path(config.out))
    for precision in ("auto", "bf16"):
        args.precision = precision
        budget.train_at_budget("mnist5k", "uniform", {}, 0, args)
    assert [Path(c.out).name for c in trained] == ["uniform-s0-b16-p384", "uniform-bf16-s0-b16-p384"]
    assert [c.precision for c in trained] == ["auto", "bf16"]
