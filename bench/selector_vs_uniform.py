"""The seed's table on small data: uniform vs heuristic vs loss-aware vs the learned A-SelecT selector, at equal cost.

Every policy trains DiT-T/4 (by default) on each dataset until it has spent the same counted budget of DiT
image-passes: a DiT step costs 3·B, and `learned` also spends 2·B per selector update (its two feature
passes), so it gets fewer steps — the comparison charges the selector for what it costs. Then, when
`analysis.selection` is importable, a linear probe measures each run's features at the oracle-best
(timestep, layer) and at the one the HFR criterion picks (`select_timestep(run, method=...)`).

Prints, per dataset: policy, effective timesteps (exp entropy of the final p(t)), steps, image-passes,
training cost relative to `uniform` (the "full" reference: all T timesteps), oracle and HFR probe accuracy;
writes the CSV to bench/results/. Runs live under runs/bench/ (git-ignored), named by policy, batch size
and budget, and are resumed, so a rerun only redoes what is missing. Usage:

    python bench/selector_vs_uniform.py [--quick] [--datasets mnist5k shapes] [--budget 384000]
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without an install

from aselect_core.train import RunDir, TrainConfig, train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
POLICIES: dict[str, dict] = {"uniform": {}, "uniform-subset": {"k": 10}, "loss-aware": {"bins": 50},
                             "learned": {"update_every": 4}}


def counted_passes(policy: str, kwargs: dict, batch_size: int, steps: int) -> int:
    """Image-passes the trainer counts for `steps` steps: 3·B per step, plus 2·B per selector update of `learned`
    (it updates at steps 0, u, 2u, ...)."""
    updates = -(-steps // kwargs["update_every"]) if policy == "learned" else 0
    return 3 * batch_size * steps + 2 * batch_size * updates


def steps_within(budget: int, policy: str, kwargs: dict, batch_size: int) -> int:
    """The most steps whose counted cost stays within `budget` (at least 1)."""
    steps = budget // (3 * batch_size)
    while steps > 1 and counted_passes(policy, kwargs, batch_size, steps) > budget:
        steps -= 1
    return max(1, steps)


def train_at_budget(data: str, policy: str, args: argparse.Namespace) -> Path:
    """Train `policy` on `data` for as many steps as fit the image-pass budget; returns the run dir."""
    kwargs = POLICIES[policy]
    steps = steps_within(args.budget, policy, kwargs, args.batch_size)
    config = TrainConfig(data=data, model=args.model, policy=policy, policy_kwargs=kwargs, steps=steps,
                         batch_size=args.batch_size, lr=args.lr, seed=args.seed, image_size=args.image_size,
                         checkpoint_every=steps, keep_last=1, curriculum_every=max(1, steps // 20),
                         out=str(args.runs / data / f"{policy}-b{args.batch_size}-p{args.budget}"), resume=True,
                         device=args.device)
    return train(config, progress=not args.quiet)


def probe(run: Path, args: argparse.Namespace) -> dict[str, float]:
    """Probe accuracy at the oracle-best and the HFR-selected (timestep, layer); {} without analysis.selection."""
    if importlib.util.find_spec("analysis.selection") is None:
        return {}
    from analysis.selection import select_timestep
    kw = {"n_images": args.probe_images, "seed": args.seed, "timesteps": args.probe_timesteps, "device": args.device}
    oracle = select_timestep(run, method="oracle", **kw)
    hfr = select_timestep(run, method="hfr", **kw)
    return {"oracle_timestep": oracle.timestep, "oracle_layer": oracle.layer, "oracle_accuracy": oracle.score,
            "hfr_timestep": hfr.timestep, "hfr_layer": hfr.layer, "hfr_accuracy": hfr.accuracy_at_choice}


def row(data: str, policy: str, run: Path, args: argparse.Namespace) -> dict:
    rd = RunDir(run)
    metrics, curriculum = rd.metrics(), rd.curriculum()
    last = metrics.iloc[-1]
    return {"dataset": data, "policy": policy, "effective_timesteps": float(curriculum.effective_timesteps.iloc[-1]),
            "steps": int(last.step), "image_passes": int(last.image_passes), "final_loss": float(last.loss),
            "wall_seconds": float(last.wall_seconds), **probe(run, args)}


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["mnist5k", "shapes"])
    ap.add_argument("--policies", nargs="+", default=list(POLICIES), choices=list(POLICIES))
    ap.add_argument("--model", default="DiT-T/4")
    ap.add_argument("--budget", type=int, default=3 * 64 * 2000, help="image-passes per run (default: 2000 "
                    "uniform steps of batch 64)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--probe-images", type=int, default=1000)
    ap.add_argument("--probe-timesteps", type=int, nargs="+", default=None, help="default: 20 evenly spaced")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench" / "selector_vs_uniform")
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny budget, batch and probe")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.budget, args.batch_size, args.probe_images = 3 * 16 * 8, 16, 32
        args.probe_timesteps = args.probe_timesteps or [0, 500]
        args.runs = args.runs.with_name(args.runs.name + "_quick")

    start = time.perf_counter()
    rows = [row(data, policy, train_at_budget(data, policy, args), args)
            for data in args.datasets for policy in args.policies]
    table = pd.DataFrame(rows)
    full = table[table.policy == "uniform"].set_index("dataset").image_passes
    table["cost_relative_to_full"] = table.image_passes / table.dataset.map(full)

    args.results.mkdir(parents=True, exist_ok=True)
    out = args.results / f"selector_vs_uniform{'_quick' if args.quick else ''}.csv"
    table.to_csv(out, index=False)
    shown = ["dataset", "policy", "effective_timesteps", "oracle_accuracy", "hfr_accuracy", "cost_relative_to_full",
             "steps", "image_passes", "final_loss"]
    print(table[[c for c in shown if c in table]].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"wrote {out} ({time.perf_counter() - start:.0f} s)")
    return table


if __name__ == "__main__":
    main()
