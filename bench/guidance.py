"""Guidance and controllability: does optimising the timesteps for representation harm a DiT's response to
classifier-free guidance? (issue 19 item 4)

`uniform` and the `learned` A-SelecT selector train class-conditionally (label dropout 0.1, the reference DiT's)
on each dataset at the same counted budget of DiT image-passes (bench/budget.py). For each run and guidance
scale w (1, 1.5, 2, 4) it samples with DDIM the classes in turn and reports controllability — the domain
classifier's accuracy on the requested class (`analysis.generation`; the classifier's own test accuracy beside
it) — and the Fréchet distance of the samples to held-out test images in that classifier's features (not
Inception FID), with the oracle probe accuracy of the run (representation) once per run.

Writes bench/results/guidance[_quick].csv. Usage:

    python bench/guidance.py [--quick] [--datasets mnist5k shapes] [--scales 1 1.5 2 4] [--budget 153600]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without an install

from analysis.generation.scores import generation_scores  # noqa: E402
from analysis.selection import select_timestep  # noqa: E402
from bench.budget import add_run_args, add_sample_args, finish_sample_args, train_at_budget  # noqa: E402

POLICIES = {"uniform": {}, "learned": {"update_every": 4}}


def rows(data: str, policy: str, args: argparse.Namespace) -> list[dict]:
    run = train_at_budget(data, policy, POLICIES[policy], args.seed, args, conditional=True)
    oracle = select_timestep(run, method="oracle", n_images=args.probe_images, seed=args.seed,
                             timesteps=args.probe_timesteps, device=args.device, knn=False)
    out = []
    for w in args.scales:
        g = generation_scores(run, n_samples=args.samples, steps=args.sample_steps, seed=args.seed, cfg_scale=w,
                              device=args.device)
        out.append({"dataset": data, "policy": policy, "seed": args.seed, "cfg_scale": w,
                    "class_accuracy": g["class_accuracy"],
                    "fd": g["fd"], "fd_floor": g["fd_floor"], "kid": g["kid"]["mean"],
                    "classifier_accuracy": g["feature_extractor"]["test_accuracy"],
                    "oracle_accuracy": oracle.score, "oracle_timestep": oracle.timestep, "oracle_layer": oracle.layer})
    return out


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_args(ap)
    ap.add_argument("--scales", type=float, nargs="+", default=[1.0, 1.5, 2.0, 4.0])
    ap.add_argument("--policies", nargs="+", default=list(POLICIES), choices=list(POLICIES),
                    help="which runs to train and score (one process per policy can run side by side)")
    add_sample_args(ap)
    args = finish_sample_args(ap.parse_args(argv))

    start = time.perf_counter()
    table = pd.DataFrame([r for data in args.datasets for policy in args.policies for r in rows(data, policy, args)])
    args.results.mkdir(parents=True, exist_ok=True)
    out = args.results / f"guidance{'_quick' if args.quick else ''}.csv"
    table.to_csv(out, index=False)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"wrote {out} ({time.perf_counter() - start:.0f} s)")
    return table


if __name__ == "__main__":
    main()
