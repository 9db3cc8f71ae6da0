"""Representation vs generation per timestep policy, at equal counted cost (issue 19 item 3).

Does optimising the timesteps for features cost the DiT as a generator? The seed article's main risk for
A-SelecT is task interference: training concentrated on ~100 timesteps may buy features and lose samples. For
each dataset × policy × seed, the DiT trains at the shared counted budget (bench/budget.py: the seed table's
trained DiT rows — uniform, uniform subset k=10, learned, lognormal (EDM), logit-normal (SD3) — plus loss-aware as
bench/selector_vs_uniform.py trains it, so their runs are reused) and gets:
- representation: linear-probe accuracy at the oracle-best (timestep, block) with its 95% Wilson CI, on the probe
  splits of its training seed (as bench/seed_table.py probes);
- generation: N DDIM samples of the EMA model scored against as many held-out test images in the features of the
  workbench's domain classifier (`analysis.generation`; not Inception FID): Fréchet distance, KID (95% CI), k-NN
  precision / recall, each beside its train-vs-test images floor. The classifier, the test images and the sampling
  noise use `--seed` for every run of a dataset, so all its FDs are distances in one feature space.

Writes bench/results/tradeoff[_quick].csv (one row per run), tradeoff[_quick]_summary.csv (per dataset × policy:
mean ± std over seeds, and the paired per-seed differences to uniform) and the figure
tradeoff[_quick]_figure.{png,pdf,csv} (`analysis.figures.representation_vs_generation`: accuracy vs FD on a log
axis, one marker per run, each dataset's Pareto front dotted). `--precision bf16` trains (and only trains) in
bf16, into runs of their own. Usage:

    python bench/tradeoff.py [--quick] [--datasets mnist5k shapes] [--seeds 0 1 2] [--samples 500] [--budget 153600]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without an install

from analysis.figures import export_figure, representation_vs_generation  # noqa: E402
from analysis.generation.classifier import ARCHITECTURE  # noqa: E402
from analysis.generation.scores import generation_scores  # noqa: E402
from analysis.selection import select_timestep  # noqa: E402
from aselect_core.io import atomic_write_json, read_json  # noqa: E402
from aselect_core.train import RunDir  # noqa: E402
from bench.budget import add_run_args, add_sample_args, finish_sample_args  # noqa: E402
from bench.seed_table import ROWS, Trained, train_row  # noqa: E402
from bench.selector_vs_uniform import POLICIES  # noqa: E402

RECORD = "bench_tradeoff.json"  # a run's measured record and the options it was measured with, reused on a rerun
REFERENCE = "uniform"  # the paired differences are to this policy's run of the same dataset and seed
POLICY_ROWS: dict[str, Trained] = {  # method label -> trained row: the seed table's DiT rows and loss-aware
    **{label: row for label, row in ROWS.items() if isinstance(row, Trained) and row.objective == "denoise"},
    "loss-aware": Trained("loss-aware", "loss-aware", POLICIES["loss-aware"])}
METRICS = ["oracle_accuracy", "fd", "kid", "precision", "recall", "outside"]  # summarised as mean ± std over seeds
GENERATION = ["fd", "fd_floor", "precision", "recall", "precision_floor", "recall_floor", "outside", "outside_floor"]
PAIRED = ["oracle_accuracy", "fd"]  # also as the per-seed difference to REFERENCE


def measure(run: Path, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Oracle probe accuracy (95% CI) on seed's splits, and the generation scores of `args.samples` samples."""
    oracle = select_timestep(run, method="oracle", n_images=args.probe_images, seed=seed,
                             timesteps=args.probe_timesteps, device=args.device, knn=False)
    cell = oracle.grid.loc[oracle.grid.accuracy.idxmax()]
    gen = generation_scores(run, n_samples=args.samples, steps=args.sample_steps, seed=args.seed, device=args.device)
    rd = RunDir(run)
    last = rd.metrics().iloc[-1]
    return {"run": run.name, "effective_timesteps": float(rd.curriculum().effective_timesteps.iloc[-1]),
            "steps": int(last.step), "image_passes": int(last.image_passes),
            "oracle_timestep": oracle.timestep, "oracle_layer": oracle.layer, "oracle_accuracy": oracle.score,
            "oracle_ci_low": float(cell.accuracy_ci_low), "oracle_ci_high": float(cell.accuracy_ci_high),
            **{k: gen[k] for k in GENERATION},
            "kid": gen["kid"]["mean"], "kid_ci_low": gen["kid"]["ci_low"], "kid_ci_high": gen["kid"]["ci_high"],
            "kid_floor": gen["kid_floor"]["mean"], "classifier_accuracy": gen["feature_extractor"]["test_accuracy"]}


def measure_options(seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """What `measure` depends on besides the run's weights: a cached record is reused only when these match."""
    return {"probe_seed": seed, "probe_images": args.probe_images, "probe_timesteps": list(args.probe_timesteps),
            "samples": args.samples, "sample_steps": args.sample_steps, "seed": args.seed, "classifier": ARCHITECTURE,
            "generation": GENERATION}  # a record without a score added since is measured again


def measured(run: Path, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """`measure`, cached in RUN/bench_tradeoff.json with its options, so that one process per dataset can measure
    in parallel and a final run over all datasets only reads (and rewrites nothing but the results)."""
    path, options = run / RECORD, measure_options(seed, args)
    if path.exists() and (cached := read_json(path)).get("options") == options:
        return cached["record"]
    record = measure(run, seed, args)
    atomic_write_json(path, {"options": options, "record": record})
    return record


def summarise(records: pd.DataFrame, reference: str = REFERENCE) -> pd.DataFrame:
    """Per (dataset, policy), in first-seen order: n_seeds, the mean effective timesteps, FD floor and classifier
    accuracy, `<metric>_mean` / `_std` (ddof 1) of METRICS, and `<metric>_vs_<reference>_mean` / `_std` of PAIRED:
    each seed's difference to the `reference` run of the same dataset and seed (NaN where there is none)."""
    ref = records[records.policy == reference].set_index(["dataset", "seed"])
    keys = pd.MultiIndex.from_arrays([records.dataset, records.seed])
    deltas = {f"{m}_vs_{reference}": records[m].to_numpy() - ref[m].reindex(keys).to_numpy() for m in PAIRED}
    g = records.assign(**deltas).groupby(["dataset", "policy"], sort=False)
    stats = g[METRICS + list(deltas)].agg(["mean", "std"])
    stats.columns = [f"{metric}_{stat}" for metric, stat in stats.columns]
    means = g[["effective_timesteps", "fd_floor", "classifier_accuracy"]].mean()
    return pd.concat([g.method.first(), g.seed.nunique().rename("n_seeds"), means, stats], axis=1).reset_index()


def shown(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary as printed: accuracy in %, mean ± std (the mean alone for one seed), the paired differences to
    uniform."""
    def pm(col: str, scale: float = 1.0, digits: int = 1, sign: str = "") -> list[str]:
        return [f"{scale * m:{sign}.{digits}f}" + ("" if pd.isna(s) else f" ± {scale * s:.{digits}f}")
                for m, s in zip(summary[f"{col}_mean"], summary[f"{col}_std"])]  # one seed: no std
    return pd.DataFrame({
        "dataset": summary.dataset, "policy": summary.policy, "seeds": summary.n_seeds,
        "eff. t": summary.effective_timesteps.round(0), "oracle acc %": pm("oracle_accuracy", 100),
        "FD": pm("fd", digits=2), "FD floor": summary.fd_floor.round(3),
        f"Δacc vs {REFERENCE} pts": pm(f"oracle_accuracy_vs_{REFERENCE}", 100, sign="+"),
        f"ΔFD vs {REFERENCE}": pm(f"fd_vs_{REFERENCE}", digits=2, sign="+"),
        "KID": pm("kid", digits=4), "precision": summary.precision_mean.round(2),
        "recall": summary.recall_mean.round(2), "outside %": (100 * summary.outside_mean).round(1)})


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_args(ap)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training (and probe split) seeds")
    ap.add_argument("--policies", nargs="+", default=[r.key for r in POLICY_ROWS.values()],
                    choices=[r.key for r in POLICY_ROWS.values()])
    add_sample_args(ap)  # its --seed: the domain classifier's, test images' and sampling noise's, for every run
    return finish_sample_args(ap.parse_args(argv))  # --quick: one seed, few samples of few steps


def main(argv: list[str] | None = None) -> pd.DataFrame:
    args = parse_args(argv)
    start = time.perf_counter()
    rows = [(label, row) for label, row in POLICY_ROWS.items() if row.key in args.policies]
    records = pd.DataFrame([{"dataset": data, "policy": row.key, "method": label, "seed": seed,
                             **measured(train_row(data, row, seed, args), seed, args)}
                            for data in args.datasets for seed in args.seeds for label, row in rows])
    summary = summarise(records)
    args.results.mkdir(parents=True, exist_ok=True)
    stem = f"tradeoff{'_quick' if args.quick else ''}"
    records.to_csv(args.results / f"{stem}.csv", index=False)
    summary.to_csv(args.results / f"{stem}_summary.csv", index=False)
    fig, data = representation_vs_generation(records, size="two", height=420)
    fig.update_xaxes(type="log")  # the datasets' FDs differ by orders of magnitude
    # its own name: export_figure writes NAME.csv, which must not overwrite the records
    export_figure(fig, data, args.results, f"{stem}_figure", formats=("png", "pdf"))
    print(shown(summary).to_string(index=False))
    print(f"wrote {args.results / stem}.csv, _summary.csv and the figure {stem}_figure.png/.pdf/.csv "
          f"({time.perf_counter() - start:.0f} s)")
    return summary


if __name__ == "__main__":
    main()
