"""Emergence of the representation over training: the probe grid of a run's checkpoints against its baselines.

One long run, probed at log-spaced checkpoints (its training budget in counted image-passes), beside the raw-pixel
and random-init DiT baselines measured on the same images, per-image noise, splits and probe
(`analysis.baselines`). It answers when a DiT's best cell clears both baselines, and when the best timestep
moves off t = 0 (an interior-t peak).

- `checkpoint_budgets(run)`: every checkpoint of a run with its step and counted image-passes.
- `log_spaced(steps)`: the checkpoints at (about) doubling budgets, the last one always included.
- `emergence_grid(run, ...)`: the long table: one row per (checkpoint, timestep, layer), plus the baselines'
  rows (`model` = "dit" | "pixels" | "random-init").
- `emergence_summary(grid)`: one row per checkpoint: best cell with CI, the baselines' best, the margins, and
  whether the peak over t is interior.
- `continued(stored, new)`: a stored grid extended by the checkpoints of a run that continued it (`--init-from`),
  once the new raw-pixel baseline is shown to be the stored one (same images, noise and probe).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from analysis.baselines import pixel_grid, random_init_grid
from analysis.features import extract_features
from analysis.probe import probe_grid
from aselect_core.train.checkpoint import list_checkpoints
from aselect_core.train.rundir import RunDir

BASELINES = ("pixels", "random-init")


def checkpoint_budgets(run: str | Path) -> pd.DataFrame:
    """(step, image_passes, checkpoint) of every checkpoint file of `run`, ascending; passes from metrics.parquet."""
    rd = RunDir(Path(run))
    paths = list_checkpoints(rd.checkpoints)
    if not paths:
        raise ValueError(f"run: {run} has no checkpoints yet")
    steps = [int(p.stem.removeprefix("step_")) for p in paths]
    passes = rd.metrics().set_index("step").image_passes
    missing = [s for s in steps if s not in passes.index]
    if missing:
        raise ValueError(f"{rd.path / 'metrics.parquet'}: expected a row for checkpoint steps {missing}")
    return pd.DataFrame({"step": steps, "image_passes": [int(passes[s]) for s in steps], "checkpoint": paths})


def log_spaced(steps: Iterable[int], factor: float = 2.0) -> list[int]:
    """The smallest step, then each first step at least `factor` times the last kept one; the largest always."""
    ordered = sorted(set(int(s) for s in steps))
    if not ordered:
        return []
    kept = [ordered[0]]
    for s in ordered[1:]:
        if s >= factor * kept[-1]:
            kept.append(s)
    if kept[-1] != ordered[-1]:
        kept.append(ordered[-1])
    return kept


def emergence_grid(run: str | Path, timesteps: list[int], layers: list[int] | None = None, n_images: int = 1000,
                   seed: int = 0, steps: Iterable[int] | None = None, device: str = "cpu",
                   progress: bool = True) -> pd.DataFrame:
    """Probe grid of each chosen checkpoint (default: `log_spaced` over all) plus the two baselines, long format.

    DiT rows carry `step` and `image_passes` (the training budget spent by that checkpoint); baseline rows have
    step 0 and image_passes 0 (nothing trained). Features are cached in the run dir per checkpoint.
    """
    budgets = checkpoint_budgets(run)
    chosen = log_spaced(budgets.step) if steps is None else sorted(set(int(s) for s in steps))
    unknown = sorted(set(chosen) - set(budgets.step))
    if unknown:
        raise ValueError(f"steps: {unknown} are not checkpoints of {run}; it has {budgets.step.tolist()}")
    rows = []
    for row in tqdm(budgets[budgets.step.isin(chosen)].itertuples(), total=len(chosen), desc="checkpoints",
                    disable=not progress, dynamic_ncols=True):
        bank = extract_features(row.checkpoint, None, timesteps, layers, n_images, seed, device=device)
        rows.append(probe_grid(bank, knn=False).assign(model="dit", step=row.step, image_passes=row.image_passes))
    rows.append(pixel_grid(run, timesteps, n_images, seed, knn=False).assign(step=0, image_passes=0))
    rows.append(random_init_grid(run, timesteps, layers, n_images, seed, knn=False, device=device)
                .drop(columns="image_passes").assign(step=0, image_passes=0))
    return pd.concat(rows, ignore_index=True)


def continued(stored: pd.DataFrame, new: pd.DataFrame, atol: float = 1e-9) -> pd.DataFrame:
    """`stored` (one dataset's emergence grid) with the DiT rows of `new` (the grid of a run continued from the
    stored run's last checkpoint) added as later budgets. The source's checkpoints may be long gone, so its rows and
    both baselines are kept as stored. `new`'s raw-pixel rows must equal the stored ones: they depend only on the
    images, noise, splits, timesteps and probe, so they show that both grids measured the same thing (the
    random-init rows also run the DiT code, whose rounding may have changed since)."""
    key = ["timestep", "layer"]
    old_px, new_px = (g[g.model == "pixels"].set_index(key).accuracy.sort_index() for g in (stored, new))
    if not old_px.index.equals(new_px.index) or not np.allclose(old_px, new_px, rtol=0, atol=atol):
        raise ValueError("continued: the new run's raw-pixel baseline differs from the stored one "
                         "(expected the same images, noise, timesteps and probe)")
    steps = set(new[new.model == "dit"].step)
    if steps & set(stored[stored.model == "dit"].step):
        raise ValueError(f"continued: steps {sorted(steps & set(stored.step))} are in the stored grid already")
    return pd.concat([stored, new[new.model == "dit"]], ignore_index=True)


def _interior_peak(cells: pd.DataFrame) -> bool:
    """At the best layer, the best timestep is not the smallest one and beats that one beyond its CI."""
    layer = cells.loc[cells.accuracy.idxmax(), "layer"]
    curve = cells[cells.layer == layer].sort_values("timestep")
    best, first = curve.loc[curve.accuracy.idxmax()], curve.iloc[0]
    return bool(best.timestep != first.timestep and best.accuracy_ci_low > first.accuracy)


def emergence_summary(grid: pd.DataFrame) -> pd.DataFrame:
    """Per checkpoint: best (timestep, layer), its accuracy and CI, the baselines' best accuracies, the margins
    (points) over each, and `interior_peak`."""
    baselines = {m: float(grid[grid.model == m].accuracy.max()) for m in BASELINES}
    rows = []
    for step, cells in grid[grid.model == "dit"].groupby("step"):
        best = cells.loc[cells.accuracy.idxmax()]
        rows.append({"step": int(step), "image_passes": int(best.image_passes), "timestep": int(best.timestep),
                     "layer": best.layer, "accuracy": float(best.accuracy),
                     "accuracy_ci_low": float(best.accuracy_ci_low), "accuracy_ci_high": float(best.accuracy_ci_high),
                     "pixels": baselines["pixels"], "random_init": baselines["random-init"],
                     "margin_pixels_points": 100 * (best.accuracy - baselines["pixels"]),
                     "margin_random_init_points": 100 * (best.accuracy - baselines["random-init"]),
                     "beats_both_by_5": bool(best.accuracy - max(baselines.values()) >= 0.05),
                     "interior_peak": _interior_peak(cells)})
    return pd.DataFrame(rows)


def best_layer_curves(grid: pd.DataFrame) -> pd.DataFrame:
    """Accuracy over t at each checkpoint's best layer, and the baselines' curves over t (random-init at its own
    best layer): the rows the emergence figure draws, with `series` naming each curve."""
    parts = []
    for (model, step), cells in grid.groupby(["model", "step"]):
        layer = cells.loc[cells.accuracy.idxmax(), "layer"]
        series = f"{int(cells.image_passes.iloc[0]):,} passes" if model == "dit" else str(model)
        parts.append(cells[cells.layer == layer].sort_values("timestep").assign(series=series))
    out = pd.concat(parts, ignore_index=True)
    return out.assign(order=np.where(out.model == "dit", out.step, -1)).sort_values(["order", "timestep"]) \
        .drop(columns="order").reset_index(drop=True)
