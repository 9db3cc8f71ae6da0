"""The probe's pooling as a recipe dimension (issue 13): does keeping where a feature sits change the answer?

For each run, the latest EMA DiT's token maps at a few timesteps × every block are probed with each pooling of
`analysis.probe.POOLINGS` — `mean` (the workbench's protocol), `grid2` / `grid4` (region means on a 2×2 / 4×4
layout of the patch grid) — beside a random-init DiT of the same architecture (`analysis.baselines`,
"random-gates") probed the same ways, and raw pixels (flattened x₀), all on the same train/test images, per-image
noise and logistic probe (95% Wilson CIs). The margins say, per pooling, how far the trained DiT's best cell sits
above both baselines.

Writes bench/results/pooling.csv (every cell) and prints the best cell per run × pooling. Usage:

    python bench/pooling.py RUN [RUN ...] [--timesteps 0 100 200 400] [--n-images 1000]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without an install

from analysis.baselines import pixel_grid, random_init_dit  # noqa: E402
from analysis.features import extract_features, resolve_source  # noqa: E402
from analysis.probe import probe_grid  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
POOLS = ("mean", "grid2", "grid4")


def run_cells(run: Path, timesteps: list[int], n_images: int, seed: int, pools: tuple[str, ...]) -> pd.DataFrame:
    """Every (model, pooling, timestep, layer) cell of one run: trained, random-init and the pixel rows."""
    src = resolve_source(run)
    models = {"trained": src.model, "random-init": random_init_dit(src.model, seed=seed)}
    frames = []
    for name, model in models.items():
        bank = extract_features(model, src.data_spec, timesteps, None, n_images, seed, tokens=True, cache=False,
                                schedule=src.schedule, progress=False)
        frames += [probe_grid(bank, pooling=pool, knn=False).assign(model=name) for pool in pools]
    frames.append(pixel_grid(run, [0], n_images, seed, knn=False))
    return pd.concat(frames, ignore_index=True).assign(run=run.name, dataset=src.data_spec)


def best_per_pooling(cells: pd.DataFrame) -> pd.DataFrame:
    """Per run and pooling: the trained DiT's best cell with its CI, the best random-init cell, pixels, margins."""
    rows = []
    pixels = cells[cells.model == "pixels"].groupby("run").accuracy.max()
    for (run, pool), g in cells[cells.model != "pixels"].groupby(["run", "pooling"], sort=False):
        trained, rand = g[g.model == "trained"], g[g.model == "random-init"]
        best = trained.loc[trained.accuracy.idxmax()]
        rows.append({"run": run, "pooling": pool, "timestep": best.timestep, "layer": best.layer,
                     "accuracy": best.accuracy, "ci_low": best.accuracy_ci_low, "ci_high": best.accuracy_ci_high,
                     "random_init": rand.accuracy.max(), "pixels": pixels[run],
                     "over_random_init_pts": 100 * (best.accuracy - rand.accuracy.max()),
                     "over_pixels_pts": 100 * (best.accuracy - pixels[run])})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--timesteps", type=int, nargs="+", default=[0, 100, 200, 400])
    ap.add_argument("--n-images", type=int, default=1000)
    ap.add_argument("--pools", nargs="+", default=list(POOLS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS / "pooling.csv")
    args = ap.parse_args(argv)
    cells = pd.concat([run_cells(r, args.timesteps, args.n_images, args.seed, tuple(args.pools)) for r in args.runs],
                      ignore_index=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cells.to_csv(args.out, index=False)
    table = best_per_pooling(cells)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"wrote {args.out}")
    return table


if __name__ == "__main__":
    main()
