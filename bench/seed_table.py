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

Runs live under runs/bench/policies[_quick]/ (git-ignored), shared with bench/selector_vs_uniform.py (its
seed-0 uniform, uniform-subset and learned runs are this table's), and are resumed, so a rerun only redoes what
is missing. Writes bench/results/seed_table[_quick].csv (and _records.csv, one row per seed), .tex and the
figure seed_table[_quick]_figure.{png,pdf,csv}. Usage:

    python bench/seed_table.py [--quick] [--budget 153600] [--seeds 0 1 2] [--datasets mnist5k shapes]
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
from analysis.figures import export_figure, seed_table_dots  # noqa: E402
from analysis.seed_table import FULL, summarise, to_latex  # noqa: E402
from analysis.selection import select_timestep  # noqa: E402
from aselect_core.train import RunDir  # noqa: E402
from bench.budget import add_run_args, finish_args, train_at_budget  # noqa: E402



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
    """Train `row` on `data` at the shared budget (bench/budget.py); returns the run dir."""
    return train_at_budget(data, row.policy, row.policy_kwargs, seed, args, objective=row.objective, key=row.key)


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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_args(ap)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--random-init", default="random-gates", choices=list(INITS))
    args = finish_args(ap.parse_args(argv))
    if args.quick:
        args.seeds = [0]
    return args


def main(argv: list[str] | None = None) -> pd.DataFrame:
    args = parse_args(argv)
    start = time.perf_counter()
    records = pd.DataFrame([r for data in args.datasets for seed in args.seeds for r in per_seed(data, seed, args)])
    table = summarise(records)
    args.results.mkdir(parents=True, exist_ok=True)
    stem = args.results / f"seed_table{'_quick' if args.quick else ''}"
    table.to_csv(stem.with_suffix(".csv"), index=False)
    records.to_csv(stem.with_name(stem.name + "_records.csv"), index=False)  # one row per seed: what the mean hides
    stem.with_suffix(".tex").write_text(to_latex(table))
    # the figure gets its own name: export_figure writes NAME.csv, which must not overwrite the table
    export_figure(*seed_table_dots(table), args.results, f"{stem.name}_figure", formats=("png", "pdf"))
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"wrote {stem}.csv, _records.csv, .tex and the figure {stem.name}_figure.png/.pdf/.csv "
          f"({time.perf_counter() - start:.0f} s)")
    return table


if __name__ == "__main__":
    main()
