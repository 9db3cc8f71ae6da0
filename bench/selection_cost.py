"""What each timestep-selection method costs and how far its choice falls from the oracle's.

    python bench/selection_cost.py RUN_DIR [RUN_DIR ...] [--n-images 1000] [--timesteps 0,50,...] [--seed 0]

For each run: the oracle probe grid (cached in the run's analysis folder after the first time), then hfr (max
and min HFR), mi and coarse-to-fine, each with its (timestep, layer), probe accuracy at the choice, regret in
accuracy points, counted image-passes, cost ratio vs the oracle and wall time; plus the Spearman rho between
HFR and probe accuracy over the grid. Prints the table and writes bench/results/selection_cost.csv.
The issue's target: HFR at least 20x cheaper than the oracle with regret at most 2 points.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.selection import hfr_accuracy_correlation, select_timestep  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "selection_cost.csv"
VARIANTS = [("oracle", {}), ("hfr", {"hfr_mode": "max"}), ("hfr", {"hfr_mode": "min"}), ("mi", {}),
            ("coarse-to-fine", {})]
COLUMNS = ["run", "method", "timestep", "layer", "accuracy", "regret_points", "image_passes", "cost_ratio",
           "wall_seconds", "hfr_accuracy_rho", "hfr_accuracy_p"]


def bench_run(run: str, n_images: int, timesteps: list[int] | None, seed: int) -> list[dict]:
    common = dict(timesteps=timesteps, n_images=n_images, seed=seed, progress=True)
    rows, grids = [], {}
    for method, kw in VARIANTS:
        sel = select_timestep(run, method=method, **common, **kw)
        grids.setdefault(method, sel.grid)
        label = f"{method} ({kw['hfr_mode']})" if "hfr_mode" in kw else method
        rows.append({"run": Path(run).name, "method": label, "timestep": sel.timestep, "layer": sel.layer,
                     "accuracy": sel.accuracy_at_choice, "regret_points": sel.regret,
                     "image_passes": sel.cost_image_passes, "cost_ratio": sel.cost_ratio,
                     "wall_seconds": sel.wall_seconds})
    rho, p = hfr_accuracy_correlation(grids["oracle"], grids["hfr"])
    return [{**r, "hfr_accuracy_rho": rho, "hfr_accuracy_p": p} for r in rows]


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run dirs")
    parser.add_argument("--n-images", type=int, default=1000, help="probe train images (test: half as many)")
    parser.add_argument("--timesteps", type=lambda s: [int(x) for x in s.split(",")], default=None,
                        help="comma-separated candidate timesteps (default 20 spread over [0, T))")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    df = pd.DataFrame([r for run in args.runs for r in bench_run(run, args.n_images, args.timesteps, args.seed)],
                      columns=COLUMNS)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(RESULTS, index=False)
    with pd.option_context("display.width", 200, "display.max_columns", None, "display.precision", 3):
        print(df.to_string(index=False))
    print(f"wrote {RESULTS}")
    return df


if __name__ == "__main__":
    main()
