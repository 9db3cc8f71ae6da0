"""When does a DiT's representation emerge? Probe accuracy at the best (t, block) vs training budget (issue 13).

One long run per dataset with the flagship recipe (`bench/recipes/flagship.yaml`: DiT-T/4 at 32 px, an 8×8
token grid), its checkpoints kept; each log-spaced checkpoint is probed over timestep × block (the probe
protocol of `analysis`: mean-pooled null-class tokens, standardised, logistic regression, 95% Wilson CI over the
test images), beside raw pixels and a random-init DiT of the same architecture on the same images, noise and
probe (`analysis.emergence`). Training resumes: rerun with a larger `--steps` to extend a run, or with
`--no-train` to probe what exists. `--continued DATA=RUN` adds the checkpoints of a run that continued DATA's
(`aselect train --init-from`, e.g. from a shipped slim copy once the long run's checkpoints are gone) to the rows
already in emergence.csv, after checking that its raw-pixel baseline is the stored one.

Writes under --results: emergence.csv (every probed cell: dataset, model, step, image_passes, timestep, layer,
accuracy, CI), emergence_summary.csv (per dataset and checkpoint: best cell, CI, baselines, margins,
interior-peak flag), emergence_curves_DATASET.{png,pdf,csv} and emergence_budget.{png,pdf,csv}. Usage:

    python bench/emergence.py [--datasets shapes textures mnist5k] [--steps 6000] [--runs DIR] [--no-train]
    python bench/emergence.py --continued textures=RUN --probe-images 500 --timesteps 0 100 ... 900
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without an install

from analysis.emergence import best_layer_curves, continued, emergence_grid, emergence_summary  # noqa: E402
from analysis.figures import emergence_budget, emergence_curves, export_figure, export_session  # noqa: E402
from analysis.selection import default_timesteps  # noqa: E402
from aselect_core.train import TrainConfig, train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "bench" / "recipes" / "flagship.yaml"


def flagship_config(data: str, policy: str, steps: int, runs: Path, recipe: Path = RECIPE,
                    device: str = "cpu") -> TrainConfig:
    """The recipe's TrainConfig for `data` and `policy`, living at runs/DATA-POLICY (resumed when there)."""
    fields = yaml.safe_load(recipe.read_text())
    return TrainConfig(**fields, data=data, policy=policy, steps=steps, out=str(runs / f"{data}-{policy}"),
                       resume=True, device=device)


def merged(path: Path, new: pd.DataFrame, datasets: list[str]) -> pd.DataFrame:
    """`new` written to `path` in place of that CSV's rows of `datasets`, keeping the other datasets' rows (a run
    probed in an earlier session need not exist any more); returns what was written."""
    old = pd.read_csv(path) if path.is_file() else new.iloc[:0]
    out = pd.concat([old[~old.dataset.isin(datasets)], new], ignore_index=True)
    out.to_csv(path, index=False)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["shapes", "textures", "mnist5k"])
    ap.add_argument("--steps", type=int, default=6000, help="train (or resume) each run to this many steps")
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "flagship")
    ap.add_argument("--recipe", type=Path, default=RECIPE)
    ap.add_argument("--no-train", action="store_true", help="probe the checkpoints that exist; train nothing")
    ap.add_argument("--probe-images", type=int, default=1000)
    ap.add_argument("--timesteps", type=int, nargs="+", default=None, help="default: 20 evenly spaced")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--continued", nargs="+", default=[], metavar="DATA=RUN",
                    help="probe RUN's checkpoints as later budgets of DATA's stored rows (a run continued with "
                         "--init-from); trains nothing, replaces --datasets")
    args = ap.parse_args()
    runs = dict(spec.split("=", 1) for spec in args.continued)
    datasets = list(runs) or args.datasets
    stored = pd.read_csv(args.results / "emergence.csv") if runs else None

    grids, summaries = [], []
    for data in datasets:
        config = flagship_config(data, "uniform", args.steps, args.runs, args.recipe, args.device)
        run = Path(runs.get(data, config.out)) if runs or args.no_train else train(config)
        ts = args.timesteps or default_timesteps(config.num_timesteps)
        grid = emergence_grid(run, ts, None, args.probe_images, args.seed, device=args.device).assign(dataset=data)
        if runs:
            grid = continued(stored[stored.dataset == data], grid)
        summary = emergence_summary(grid).assign(dataset=data)
        print(f"\n{data} ({run}):\n{summary.to_string(index=False)}", flush=True)
        grids.append(grid)
        summaries.append(summary)
    args.results.mkdir(parents=True, exist_ok=True)
    grid = merged(args.results / "emergence.csv", pd.concat(grids, ignore_index=True), datasets)
    summary = merged(args.results / "emergence_summary.csv", pd.concat(summaries, ignore_index=True), datasets)
    with export_session():
        for data in datasets:
            export_figure(*emergence_curves(best_layer_curves(grid[grid.dataset == data])), args.results,
                          f"emergence_curves_{data}", formats=("png", "pdf"))
        export_figure(*emergence_budget(summary), args.results, "emergence_budget", formats=("png", "pdf"))


if __name__ == "__main__":
    main()
