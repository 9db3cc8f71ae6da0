"""Training at an equal counted budget: the shared half of bench/selector_vs_uniform.py and bench/seed_table.py.

Every trained row of both benches spends the same budget of DiT image-passes as the trainer counts them (a
step costs 3·B: forward 1, backward 2; `learned` also pays 2·B per selector update). A run is named by
(key, seed, batch, budget) under `--runs`, and both benches default to the same runs dir, so the seed-0 runs
of the selector comparison are the seed-0 runs of the seed table, trained once. Runs are resumed: a rerun only
redoes what is missing.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without an install

from analysis.selection import default_timesteps  # noqa: E402
from aselect_core.precision import PRECISIONS  # noqa: E402
from aselect_core.train import TrainConfig, train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_STEPS = 800  # uniform steps of batch 64 per run: 153,600 image-passes, ~4 min of DiT-T/4 at 16 px per core
QUICK = {"budget": 3 * 16 * 8, "batch_size": 16, "image_size": 16, "probe_images": 64, "probe_timesteps": [0, 500]}


def counted_passes(policy: str, kwargs: dict, batch_size: int, steps: int) -> int:
    """Image-passes the trainer counts for `steps` steps: 3·B per step, plus 2·B per selector update of `learned`
    (it updates at steps 0, u, 2u, ...; a frozen, transferred selector never does)."""
    updates = -(-steps // kwargs["update_every"]) if policy == "learned" and not kwargs.get("freeze_selector") else 0
    return 3 * batch_size * steps + 2 * batch_size * updates


def steps_within(budget: int, policy: str, kwargs: dict, batch_size: int) -> int:
    """The most steps whose counted cost stays within `budget` (at least 1)."""
    steps = budget // (3 * batch_size)
    while steps > 1 and counted_passes(policy, kwargs, batch_size, steps) > budget:
        steps -= 1
    return max(1, steps)


def train_at_budget(data: str, policy: str, kwargs: dict, seed: int, args: argparse.Namespace,
                    objective: str = "denoise", key: str | None = None, conditional: bool = False) -> Path:
    """Train `policy` on `data` for as many steps as fit `args.budget` (class-conditionally, with label dropout,
    when `conditional`); returns the run dir (resumed if there). A `--precision` other than auto trains another
    run (its name says which: the config hash differs, so it cannot resume the auto one)."""
    steps = steps_within(args.budget, policy, kwargs, args.batch_size)
    suffix = ("-cond" if conditional else "") + ("" if args.precision == "auto" else f"-{args.precision}")
    key = (key or policy) + suffix
    config = TrainConfig(data=data, model=args.model, objective=objective, policy=policy, policy_kwargs=kwargs,
                         conditional=conditional,
                         steps=steps, batch_size=args.batch_size, lr=args.lr, seed=seed, image_size=args.image_size,
                         checkpoint_every=steps, keep_last=1, curriculum_every=max(1, steps // 20),
                         out=str(args.runs / data / f"{key}-s{seed}-b{args.batch_size}-p{args.budget}"),
                         resume=True, device=args.device, precision=args.precision)
    return train(config, progress=not args.quiet)


def add_run_args(ap: argparse.ArgumentParser) -> None:
    """The arguments both benches share: what is trained, how it is probed, where runs and results go."""
    ap.add_argument("--datasets", nargs="+", default=["mnist5k", "shapes"])
    ap.add_argument("--model", default="DiT-T/4", help="DiT config (an MAE row gets its encoder shape)")
    ap.add_argument("--budget", type=int, default=3 * 64 * DEFAULT_STEPS,
                    help=f"counted image-passes per trained run (default: {DEFAULT_STEPS} uniform steps of batch 64)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--image-size", type=int, default=16)
    ap.add_argument("--probe-images", type=int, default=1000)
    ap.add_argument("--probe-timesteps", type=int, nargs="+", default=None, help="default: 20 evenly spaced")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    ap.add_argument("--precision", default="auto", choices=list(PRECISIONS),
                    help="training precision (aselect_core.precision); bf16 is opt-in on the CPU, 1.3-2x faster "
                         "with AVX512-BF16")
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench" / "policies")
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny budget, batch and probe grid")
    ap.add_argument("--quiet", action="store_true")


def finish_args(args: argparse.Namespace, num_timesteps: int = 1000) -> argparse.Namespace:
    """Apply --quick (and its separate runs dir; one seed where a bench has --seeds) and the default probe
    timesteps: 20 evenly spaced."""
    if args.quick:
        for name, value in QUICK.items():
            setattr(args, name, getattr(args, name) if name == "probe_timesteps" and args.probe_timesteps else value)
        if hasattr(args, "seeds"):
            args.seeds = [0]
        args.runs = args.runs.with_name(args.runs.name + "_quick")
    args.probe_timesteps = args.probe_timesteps or default_timesteps(num_timesteps)
    return args


def add_sample_args(ap: argparse.ArgumentParser) -> None:
    """The generation benches' sampling arguments (guidance.py, transfer.py) and the training seed."""
    ap.add_argument("--samples", type=int, default=500, help="DDIM samples per run (and guidance scale) for FD")
    ap.add_argument("--sample-steps", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)


def finish_sample_args(args: argparse.Namespace) -> argparse.Namespace:
    """`finish_args`, and --quick's few samples of few steps."""
    args = finish_args(args)
    if args.quick:
        args.samples, args.sample_steps = 40, 10
    return args
