"""The seed article's table, measured: per-seed records -> mean ± std per (dataset, method), its LaTeX, its file.

`bench/seed_table.py` trains and probes; this module turns its per-seed records (dataset, method, seed,
accuracy, timestep, layer, steps, effective_timesteps, image_passes) into the table the seed prints —
effective timesteps, linear-probe accuracy (mean ± std over seeds), training cost relative to Full — and reads
that table back (`load_seed_table`) for the app's Compare page and `aselect figures --seed-table`.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from analysis.frames import require_columns

FULL = "Full diffusion (uniform)"  # the reference row: cost is measured relative to it
RECORD_COLUMNS = ["dataset", "method", "seed", "accuracy", "timestep", "layer", "steps", "effective_timesteps",
                  "image_passes"]
TABLE_COLUMNS = ["dataset", "method", "effective_timesteps", "accuracy_mean", "accuracy_std", "n_seeds",
                 "delta_vs_full_mean", "delta_vs_full_std", "best_cells", "steps", "image_passes",
                 "cost_relative_to_full"]


def summarise(records: pd.DataFrame, full: str = FULL) -> pd.DataFrame:
    """Mean ± std (ddof 1) over seeds per (dataset, method) in first-seen order. Against the same seed's `full`
    row: the paired accuracy difference delta_vs_full (mean ± std; the seeds share their probe splits and data
    order with Full, so the paired difference is far less noisy than two means) and the cost ratio. best_cells
    lists each seed's oracle cell ("t=500/block.3")."""
    require_columns(records, RECORD_COLUMNS, "records")
    ref = records[records.method == full].set_index(["dataset", "seed"])
    missing = sorted({(d, s) for d, s in zip(records.dataset, records.seed)} - set(ref.index))
    if missing:
        raise ValueError(f"records: no {full!r} row for (dataset, seed) {missing}")
    keys = list(zip(records.dataset, records.seed))
    records = records.assign(cost=records.image_passes.to_numpy() / ref.image_passes.loc[keys].to_numpy(),
                             delta=records.accuracy.to_numpy() - ref.accuracy.loc[keys].to_numpy(),
                             cell=[f"t={t}/{layer}" for t, layer in zip(records.timestep, records.layer)])
    g = records.groupby(["dataset", "method"], sort=False)
    return pd.DataFrame({
        "effective_timesteps": g.effective_timesteps.mean(), "accuracy_mean": g.accuracy.mean(),
        "accuracy_std": g.accuracy.std(ddof=1), "n_seeds": g.seed.nunique(),
        "delta_vs_full_mean": g.delta.mean(), "delta_vs_full_std": g.delta.std(ddof=1),
        "best_cells": g.cell.agg(" ".join), "steps": g.steps.mean(), "image_passes": g.image_passes.mean(),
        "cost_relative_to_full": g.cost.mean()}).reset_index()


def to_latex(table: pd.DataFrame) -> str:
    """The table as the seed prints it — method, effective timesteps, probe accuracy (%), cost relative to Full —
    plus the paired difference to Full in points."""
    require_columns(table, TABLE_COLUMNS, "table")
    show = pd.DataFrame({
        "Dataset": table.dataset, "Method": table.method,
        "Effective timesteps": table.effective_timesteps.map(lambda v: "--" if math.isnan(v) else f"{v:.0f}"),
        "Linear probe (%)": [f"{100 * m:.1f}" + ("" if math.isnan(s) else f" $\\pm$ {100 * s:.1f}")
                             for m, s in zip(table.accuracy_mean, table.accuracy_std)],
        "vs Full (points)": [f"{100 * m:+.1f}" + ("" if math.isnan(s) else f" $\\pm$ {100 * s:.1f}")
                             for m, s in zip(table.delta_vs_full_mean, table.delta_vs_full_std)],
        "Cost vs Full": table.cost_relative_to_full.map(lambda v: f"{100 * v:.0f}\\%")})
    return show.to_latex(index=False)


def load_seed_table(path: str | Path) -> pd.DataFrame:
    """A seed_table.csv written by bench/seed_table.py; one-line errors for a missing file or missing columns."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no seed table there "
                                "(bench/seed_table.py writes bench/results/seed_table.csv)")
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a readable CSV ({type(e).__name__})") from None
    return require_columns(table, TABLE_COLUMNS, str(path))
