"""Does a learned timestep selector transfer across datasets, or must it be relearned? (issue 19 item 5)

For each ordered pair SOURCE:TARGET (same image shape: the selector reads x₀), four runs train on TARGET at the
same counted budget of DiT image-passes (bench/budget.py): the native `learned` policy, the SOURCE run's selector
transferred and frozen (`selector_from=..., freeze_selector=true`: no reward passes, so more DiT steps), the same
selector fine-tuned (`selector_from=...`), and `uniform`. The SOURCE run is `learned` at the same budget (the run
bench/selector_vs_uniform.py trains, reused when present). Each target run gets: the oracle probe accuracy
(`analysis.selection`, best (t, block) with its 95% Wilson CI), the Fréchet distance of DDIM samples to held-out
test images in the workbench's domain-classifier features (`analysis.generation`; not Inception FID), and the KL
between its final p(t) and the native selector's (and the source's) — how far the transferred curriculum sits from
the one the target would have learned.

Writes bench/results/transfer[_quick].csv. Usage:

    python bench/transfer.py [--quick] [--pairs mnist5k:digits shapes:textures] [--budget 153600]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without an install

from analysis.curriculum import policy_kl  # noqa: E402
from aselect_core.train import RunDir  # noqa: E402
from bench.budget import add_run_args, add_sample_args, finish_sample_args, train_at_budget  # noqa: E402
from bench.tradeoff import measure  # noqa: E402

LEARNED = {"update_every": 4}  # the selector comparison's learned policy, so its source runs are shared
ARMS = ("native", "transferred-frozen", "transferred-tuned", "uniform")


def arm_policy(arm: str, source: Path) -> tuple[str, dict, str]:
    """(policy, kwargs, run key) of one arm on the target."""
    transfer, origin = {**LEARNED, "selector_from": str(source)}, f"learned-from-{source.parent.name}"
    return {"native": ("learned", LEARNED, "learned"),
            "transferred-frozen": ("learned", {**transfer, "freeze_selector": True}, f"{origin}-frozen"),
            "transferred-tuned": ("learned", transfer, f"{origin}-tuned"),
            "uniform": ("uniform", {}, "uniform")}[arm]


def pair_rows(source_data: str, target: str, args: argparse.Namespace) -> list[dict]:
    source = train_at_budget(source_data, "learned", LEARNED, args.seed, args)
    runs = {}
    for arm in ARMS:
        policy, kwargs, key = arm_policy(arm, source)
        runs[arm] = train_at_budget(target, policy, kwargs, args.seed, args, key=key)
    native, src = RunDir(runs["native"]).curriculum(), RunDir(source).curriculum()
    rows = []
    for arm, run in runs.items():
        cur = RunDir(run).curriculum()
        rows.append({"source": source_data, "target": target, "arm": arm, "seed": args.seed,
                     **measure(run, args.seed, args),
                     "kl_to_native": policy_kl(cur, native), "kl_to_source": policy_kl(cur, src)})
    return rows


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_args(ap)
    ap.add_argument("--pairs", nargs="+", default=["mnist5k:digits", "shapes:textures"],
                    help="ordered SOURCE:TARGET dataset pairs of the same image shape")
    add_sample_args(ap)
    args = finish_sample_args(ap.parse_args(argv))
    pairs = [tuple(p.split(":")) for p in args.pairs]
    if any(len(p) != 2 for p in pairs):
        ap.error(f"--pairs: expected SOURCE:TARGET, got {args.pairs}")

    start = time.perf_counter()
    table = pd.DataFrame([row for source, target in pairs for row in pair_rows(source, target, args)])
    args.results.mkdir(parents=True, exist_ok=True)
    out = args.results / f"transfer{'_quick' if args.quick else ''}.csv"
    table.to_csv(out, index=False)
    shown = ["source", "target", "arm", "oracle_accuracy", "oracle_ci_low", "oracle_ci_high", "fd", "fd_floor",
             "kl_to_native", "kl_to_source", "effective_timesteps", "steps", "image_passes"]
    print(table[shown].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"wrote {out} ({time.perf_counter() - start:.0f} s)")
    return table


if __name__ == "__main__":
    main()
