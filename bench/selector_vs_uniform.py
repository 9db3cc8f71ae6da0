"""The seed's table on small data: uniform vs heuristic vs loss-aware vs the learned A-SelecT selector, at equal cost.

Every policy trains DiT-T/4 (by default, 16 px) on each dataset until it has spent the same counted budget of
DiT image-passes (bench/budget.py): `learned` also pays 2·B per selector update, so it gets fewer steps — the
comparison charges the selector for what it costs. A linear probe then measures each run's features at the
oracle-best (timestep, layer) and at the cells the HFR criterion picks with max (the published rule) and min HFR.

Prints, per dataset: policy, effective timesteps (exp entropy of the final p(t)), probe accuracies, training
cost relative to `uniform` (the "full" reference: all T timesteps), steps, image-passes; writes
bench/results/selector_vs_uniform[_quick].csv and the curriculum figures (png, pdf, csv): selector_curricula
(each policy's final p(t) as a density over t, one panel per dataset) and learned_curriculum_DATASET (the
selector's p(t) over training above its effective number of timesteps). Usage:

    python bench/selector_vs_uniform.py [--quick] [--datasets mnist5k shapes] [--budget 153600]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without an install

from analysis.figures import curriculum_heatmap, export_figure, export_session, policy_marginals  # noqa: E402
from analysis.selection import select_timestep  # noqa: E402
from aselect_core.train import RunDir  # noqa: E402
from bench.budget import add_run_args, finish_args, train_at_budget  # noqa: E402

POLICIES: dict[str, dict] = {"uniform": {}, "uniform-subset": {"k": 10}, "loss-aware": {"bins": 50},
                             "learned": {"update_every": 4}}


def probe(run: Path, args: argparse.Namespace) -> dict[str, float]:
    """Probe accuracy at the oracle-best (timestep, layer) and at the ones HFR picks, with max (the published
    rule) and min HFR (bench/README.md: on small DiTs the low-HFR cells have been the informative ones)."""
    kw = {"n_images": args.probe_images, "seed": args.seed, "timesteps": args.probe_timesteps, "device": args.device}
    oracle = select_timestep(run, method="oracle", knn=False, **kw)  # knn is the probe's option, not HFR's
    out = {"oracle_timestep": oracle.timestep, "oracle_layer": oracle.layer, "oracle_accuracy": oracle.score}
    for mode in ("max", "min"):
        hfr = select_timestep(run, method="hfr", hfr_mode=mode, **kw)
        out |= {f"hfr_{mode}_timestep": hfr.timestep, f"hfr_{mode}_layer": hfr.layer,
                f"hfr_{mode}_accuracy": hfr.accuracy_at_choice}
    return out


def row(data: str, policy: str, run: Path, args: argparse.Namespace) -> dict:
    rd = RunDir(run)
    last = rd.metrics().iloc[-1]
    return {"dataset": data, "policy": policy,
            "effective_timesteps": float(rd.curriculum().effective_timesteps.iloc[-1]),
            "steps": int(last.step), "image_passes": int(last.image_passes), "final_loss": float(last.loss),
            "wall_seconds": float(last.wall_seconds), **probe(run, args)}


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_args(ap)
    ap.add_argument("--policies", nargs="+", default=list(POLICIES), choices=list(POLICIES))
    ap.add_argument("--seed", type=int, default=0)
    args = finish_args(ap.parse_args(argv))

    start = time.perf_counter()
    runs = {(data, policy): train_at_budget(data, policy, POLICIES[policy], args.seed, args)
            for data in args.datasets for policy in args.policies}
    table = pd.DataFrame([row(data, policy, run, args) for (data, policy), run in runs.items()])
    full = table[table.policy == "uniform"].set_index("dataset").image_passes
    table["cost_relative_to_full"] = table.image_passes / table.dataset.map(full)

    args.results.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if args.quick else ""
    out = args.results / f"selector_vs_uniform{suffix}.csv"
    table.to_csv(out, index=False)
    curricula = {key: RunDir(run).curriculum() for key, run in runs.items()}
    with export_session():
        export_figure(*policy_marginals(curricula), args.results, f"selector_curricula{suffix}", formats=("png", "pdf"))
        for (data, policy), curriculum in curricula.items():
            if policy == "learned":  # how the selector's p(t) moved over training
                export_figure(*curriculum_heatmap(curriculum), args.results, f"learned_curriculum_{data}{suffix}",
                              formats=("png", "pdf"))
    shown = ["dataset", "policy", "effective_timesteps", "oracle_accuracy", "hfr_max_accuracy", "hfr_min_accuracy",
             "cost_relative_to_full", "steps", "image_passes", "final_loss"]
    print(table[shown].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"wrote {out} and the curriculum figures ({time.perf_counter() - start:.0f} s)")
    return table


if __name__ == "__main__":
    main()
