"""The seed article's table, measured: timestep policies, an MAE ViT, raw pixels and a random-init DiT.

Rows (`ROWS`), per dataset:
- Full diffusion: `uniform` t over all T timesteps, one t per image per step (the DiT reference). The seed's
  "every image at all T timesteps" costs T times more per image; at an equal counted budget it is this
  same objective seen on T times fewer images, so Full is defined as uniform at the shared budget.
- Uniform subset (k=10), A-SelecT learned (`learned`, selector update every 4 steps, its feature passes
  charged), lognormal (EDM), logit-normal (SD3): the DiT trained under each policy at the same budget.
- Standard ViT (MAE): the MAE of the DiT's encoder shape (objective "mae"), same data and budget, counted by
  the same rule (one forward of one image = 1, backward 2; masking not discounted, see
  aselect_core/train/objectives.py).
- Raw pixels (flattened x_t) and Random init (a DiT of the same config, `analysis.baselines`, init
  "random-gates" by default: the reference adaLN-Zero init makes every block the identity, so its layers all
  equal the patch embedding), neither trained.
Columns: effective timesteps (exp entropy of the final p(t); 1 for the MAE's single clean view; empty for the
untrained rows), linear-probe accuracy at the oracle-best (timestep, layer) of each run's grid (mean ± std over
seeds; the seed s trains with seed s and probes on the splits of seed s), and training cost relative to Full in
counted image-passes. Every trained row spends the same budget, so its cost is ~1.0 by construction (learned
a little less: whole selector updates only): the rows are compared on accuracy at equal cost, which is the
question the seed's cost column (10%, 8%, 1%) leaves open.

Runs live under runs/bench/seed_table[_quick]/ (git-ignored) and are resumed, so a rerun only redoes what is
missing. Writes bench/results/seed_table[_quick].csv and .tex. Usage:

    python bench/seed_table.py [--quick] [--budget 384000] [--seeds 0 1 2] [--datasets mnist5k shapes]
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without an install

from analysis.baselines import INITS, pixel_grid, random_init_grid  # noqa: E402
from analysis.selection import default_timesteps, select_timestep  # noqa: E402
from aselect_core.train import RunDir, TrainConfig, train  # noqa: E402
from bench.selector_vs_uniform import steps_within  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FULL = "Full diffusion (uniform)"


@dataclass(frozen=True)
class Trained:
    """A row trained by the project's trainer: its policy (and kwargs) and objective."""

    key: str
    policy: str
    policy_kwargs: dict[str, Any] = field(default_factory=dict)
    objective: str = "denoise"


ROWS: dict[str, Trained | str] = {  # label -> a trained run, or the name of an untrained baseline
    FULL: Trained("uniform", "uniform"),
    "Uniform subset (k=10)": Trained("uniform-subset", "uniform-subset", {"k": 10}),
    "A-SelecT (learned)": Trained("learned", "learned", {"update_every": 4}),
    "lognormal (EDM)": Trained("lognormal", "lognormal"),
    "logit-normal (SD3)": Trained("logit-normal", "logit-normal"),
    "Standard ViT (MAE)": Trained("mae", "fixed", {"timesteps": [0]}, objective="mae"),
    "Raw pixels": "pixels",
    "Random init (DiT)": "random-init",
}


def train_row(data: str, row: Trained, seed: int, args: argparse.Namespace) -> Path:
    """Train `row` on `data` for as many steps as fit the image-pass budget; returns the run dir."""
    steps = steps_within(args.budget, row.policy, row.policy_kwargs, args.batch_size)
    config = TrainConfig(data=data, model=args.model, objective=row.objective, policy=row.policy,
                         policy_kwargs=row.policy_kwargs, steps=steps, batch_size=args.batch_size, lr=args.lr,
                         seed=seed, image_size=args.image_size, checkpoint_every=steps, keep_last=1,
                         curriculum_every=max(1, steps // 20), device=args.device, resume=True,
                         out=str(args.runs / data / f"{row.key}-s{seed}-b{args.batch_size}-p{args.budget}"))
    return train(config, progress=not args.quiet)


def measure_trained(run: Path, row: Trained, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Oracle-best probe accuracy over the run's (timestep, layer) grid, effective timesteps and counted cost."""
    timesteps = [0] if row.objective == "mae" else args.probe_timesteps
    best = select_timestep(run, method="oracle", timesteps=timesteps, n_images=args.probe_images, seed=seed,
                           device=args.device, knn=False)
    rd = RunDir(run)
    last = rd.metrics().iloc[-1]
    return {"accuracy": best.score, "timestep": best.timestep, "layer": best.layer, "steps": int(last.step),
            "effective_timesteps": float(rd.curriculum().effective_timesteps.iloc[-1]),
            "image_passes": int(last.image_passes)}


def measure_baseline(kind: str, full_run: Path, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Oracle-best accuracy of an untrained baseline on the Full run's images, noise and schedule."""
    if kind == "pixels":
        grid = pixel_grid(full_run, args.probe_timesteps, args.probe_images, seed, knn=False)
    else:
        grid = random_init_grid(full_run, args.probe_timesteps, None, args.probe_images, seed,
                                init=args.random_init, knn=False, device=args.device)
    best = grid.loc[grid.accuracy.idxmax()]
    return {"accuracy": float(best.accuracy), "timestep": int(best.timestep), "layer": best.layer, "steps": 0,
            "effective_timesteps": math.nan, "image_passes": 0}


def per_seed(data: str, seed: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    """One record per row of `ROWS` for one dataset and seed (Full is trained first: the baselines use it)."""
    full_run = train_row(data, ROWS[FULL], seed, args)
    out = []
    for label, row in ROWS.items():
        if isinstance(row, Trained):
            run = full_run if label == FULL else train_row(data, row, seed, args)
            rec = measure_trained(run, row, seed, args)
        else:
            rec = measure_baseline(row, full_run, seed, args)
        out.append({"dataset": data, "method": label, "seed": seed, **rec})
    return out


def summarise(records: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std over seeds per (dataset, method), cost relative to the same seed's Full run."""
    full = records[records.method == FULL].set_index(["dataset", "seed"]).image_passes
    records = records.assign(cost=records.image_passes / [full[d, s] for d, s in zip(records.dataset, records.seed)])
    records["cell"] = [f"t={t}/{layer}" for t, layer in zip(records.timestep, records.layer)]
    g = records.groupby(["dataset", "method"], sort=False)
    return pd.DataFrame({
        "effective_timesteps": g.effective_timesteps.mean(), "accuracy_mean": g.accuracy.mean(),
        "accuracy_std": g.accuracy.std(ddof=1), "n_seeds": g.seed.nunique(),
        "best_cells": g.cell.agg(" ".join), "steps": g.steps.mean(), "image_passes": g.image_passes.mean(),
        "cost_relative_to_full": g.cost.mean()}).reset_index()


def to_latex(table: pd.DataFrame) -> str:
    """The table as the seed prints it: method, effective timesteps, probe accuracy (%), cost relative to Full."""
    show = pd.DataFrame({
        "Dataset": table.dataset, "Method": table.method,
        "Effective timesteps": table.effective_timesteps.map(lambda v: "--" if math.isnan(v) else f"{v:.0f}"),
        "Linear probe (%)": [f"{100 * m:.1f}" + ("" if math.isnan(s) else f" $\\pm$ {100 * s:.1f}")
                             for m, s in zip(table.accuracy_mean, table.accuracy_std)],
        "Cost vs Full": table.cost_relative_to_full.map(lambda v: f"{100 * v:.0f}\\%")})
    return show.to_latex(index=False)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["mnist5k", "shapes"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--model", default="DiT-T/4", help="DiT config; the MAE gets its encoder shape")
    ap.add_argument("--budget", type=int, default=3 * 64 * 2000, help="counted image-passes per trained run "
                    "(default: 2000 uniform steps of batch 64)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--probe-images", type=int, default=1000)
    ap.add_argument("--probe-timesteps", type=int, nargs="+", default=None, help="default: 20 evenly spaced")
    ap.add_argument("--random-init", default="random-gates", choices=list(INITS))
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench" / "seed_table")
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny budget, one seed, small probe grid")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.budget, args.batch_size, args.seeds, args.image_size, args.probe_images = 3 * 16 * 8, 16, [0], 16, 64
        args.probe_timesteps = args.probe_timesteps or [0, 500]
        args.runs = args.runs.with_name(args.runs.name + "_quick")
    args.probe_timesteps = args.probe_timesteps or default_timesteps(1000)
    return args


def main(argv: list[str] | None = None) -> pd.DataFrame:
    args = parse_args(argv)
    start = time.perf_counter()
    records = pd.DataFrame([r for data in args.datasets for seed in args.seeds for r in per_seed(data, seed, args)])
    table = summarise(records)
    args.results.mkdir(parents=True, exist_ok=True)
    stem = args.results / f"seed_table{'_quick' if args.quick else ''}"
    table.to_csv(stem.with_suffix(".csv"), index=False)
    stem.with_suffix(".tex").write_text(to_latex(table))
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"wrote {stem}.csv and .tex ({time.perf_counter() - start:.0f} s)")
    return table


if __name__ == "__main__":
    main()
