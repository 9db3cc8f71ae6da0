"""Training and feature-extraction throughput of small DiTs, as a fraction of this machine's matmul speed.

Prints img/s, achieved GFLOP/s (FLOPs counted by torch's FlopCounterMode on one step) and the model FLOP
utilisation: achieved / float32 matmul GFLOP/s measured in the same run. `--versus-reference` instead times the
project's DiT against an independent implementation in the official key set (`bench/reference_dit.py`) with the
same weights loaded into both (outputs checked equal first), in interleaved rounds, and prints the speed ratio
per mode (train step, feature extraction through every block) and config (`SIDE_BY_SIDE`). Usage:

    python bench/train_throughput.py [--configs DiT-T/4 DiT-S/4] [--batch-size 128] [--steps 10] [--profile]
    python bench/train_throughput.py --versus-reference [--rounds 7] [--batch-size 64] [--threads 1] [--pairs ...]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without an install

from aselect_core.diffusion import NoiseSchedule  # noqa: E402
from aselect_core.model import build_dit  # noqa: E402
from aselect_core.precision import autocast  # noqa: E402
from bench.reference_dit import ReferenceDiT  # noqa: E402

# name -> (DiT config, input size, in channels): pixel configs and a latent-shaped one (4 channels, as a VAE's)
SIDE_BY_SIDE = {"DiT-T/2 @16px": ("DiT-T/2", 16, 3), "DiT-S/4 @32px": ("DiT-S/4", 32, 3),
                "DiT-B/2 @32 latent": ("DiT-B/2", 32, 4)}


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    """Best-of float32 GEMM throughput, the machine's practical peak for this workload."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def train_step_fn(model, schedule, opt, x0):
    def step():
        t = torch.randint(0, schedule.num_timesteps, (x0.shape[0],))
        noise = torch.randn_like(x0)
        out = model(schedule.q_sample(x0, t, noise), t, None)
        loss = F.mse_loss(out[:, : x0.shape[1]], noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def extract_step_fn(model, schedule, x0):
    layers = list(range(model.config["depth"]))

    def step():
        with torch.inference_mode():
            t = torch.full((x0.shape[0],), 100)
            model.forward_features(schedule.q_sample(x0, t), t, None, layers=layers)
    return step


def measure(step, steps: int) -> tuple[float, float]:
    """(FLOPs of one step, best seconds per step over `steps` timed repetitions after a warm-up)."""
    with FlopCounterMode(display=False) as counter:
        step()
    step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    times.sort()
    return counter.get_total_flops(), times[len(times) // 2]


def paired_models(name: str, size: int, channels: int) -> tuple[torch.nn.Module, ReferenceDiT]:
    """The project's DiT (random weights, adaLN perturbed so no block is the identity) and the reference with the
    same state dict; refuses to go on unless both give the same output."""
    ours = build_dit(name, input_size=size, in_channels=channels, num_classes=10)
    for p in ours.parameters():
        p.data.add_(0.02 * torch.randn_like(p))
    c = ours.config
    ref = ReferenceDiT(size, c["patch_size"], channels, c["hidden_size"], c["depth"], c["num_heads"], 10)
    ref.load_state_dict(ours.state_dict(), strict=True)
    x, t, y = torch.randn(4, channels, size, size), torch.tensor([0, 10, 500, 999]), torch.full((4,), 10)
    with torch.no_grad():
        gap = (ours(x, t, y) - ref(x, t, y)).abs().max().item()
    if gap > 1e-4:
        raise SystemExit(f"{name}: the two implementations differ by {gap:.2e} on the same weights")
    return ours, ref


def side_by_side(name: str, size: int, channels: int, batch: int, rounds: int) -> dict[str, float]:
    """Median seconds per step of each (implementation, mode), timed in interleaved rounds, and their ratios."""
    ours, ref = paired_models(name, size, channels)
    schedule, depth = NoiseSchedule(), ours.config["depth"]
    x0, y = torch.randn(batch, channels, size, size), torch.full((batch,), 10)

    def train(model, precision="fp32"):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step():
            t = torch.randint(0, 1000, (batch,))
            noise = torch.randn_like(x0)
            with autocast("cpu", precision):
                out = model(schedule.q_sample(x0, t, noise), t, y)[:, :channels]
            loss = F.mse_loss(out.float(), noise)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return step

    def extract(features, precision="fp32"):
        def step():
            with torch.inference_mode(), autocast("cpu", precision):
                t = torch.full((batch,), 100)
                features(schedule.q_sample(x0, t), t)
        return step

    ours_bf16 = copy.deepcopy(ours)  # its own optimiser state; same weights
    ours_features = lambda x, t: ours.forward_features(x, t, None, layers=range(depth))  # noqa: E731
    steps = {("ours", "train"): train(ours.train()), ("reference", "train"): train(ref.train()),
             ("ours_bf16", "train"): train(ours_bf16.train(), "bf16"),
             ("ours", "extract"): extract(ours_features), ("reference", "extract"): extract(
                 lambda x, t: ref.features(x, t, y, depth)), ("ours_bf16", "extract"): extract(ours_features, "bf16")}
    times: dict[tuple[str, str], list[float]] = {k: [] for k in steps}
    for step in steps.values():
        step()  # warm-up
    for _ in range(rounds):
        for key, step in steps.items():
            t0 = time.perf_counter()
            step()
            times[key].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratios = {f"{mode}_ratio{suffix}": med[("reference", mode)] / med[(impl, mode)]
              for impl, suffix in (("ours", ""), ("ours_bf16", "_bf16")) for mode in ("train", "extract")}
    return ratios | {f"{impl}_{mode}_img_s": batch / med[(impl, mode)] for impl, mode in med}


def versus_reference(batch: int, rounds: int, labels: list[str]) -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {batch}, {rounds} interleaved rounds; "
          "ratio = reference seconds / project seconds (> 1: the project is faster); float32 (results unchanged) "
          "and the opt-in --precision bf16 (CPU autocast)")
    print(f"{'config':20} {'train':>6} {'extract':>7} {'train bf16':>10} {'extract bf16':>12} {'ours train':>10} "
          f"{'ref train':>9} {'ours extr':>9} {'ref extr':>8}  [ratios; img/s]")
    for label in labels:
        r = side_by_side(*SIDE_BY_SIDE[label], batch, rounds)
        print(f"{label:20} {r['train_ratio']:6.2f} {r['extract_ratio']:7.2f} {r['train_ratio_bf16']:10.2f} "
              f"{r['extract_ratio_bf16']:12.2f} {r['ours_train_img_s']:10.1f} {r['reference_train_img_s']:9.1f} "
              f"{r['ours_extract_img_s']:9.1f} {r['reference_extract_img_s']:8.1f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=["DiT-T/4", "DiT-S/4"])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--profile", action="store_true", help="print torch.profiler's top ops for each training step")
    p.add_argument("--versus-reference", action="store_true", help="time against bench/reference_dit.py instead")
    p.add_argument("--rounds", type=int, default=7, help="interleaved rounds of --versus-reference")
    p.add_argument("--pairs", nargs="+", choices=list(SIDE_BY_SIDE), default=list(SIDE_BY_SIDE),
                   help="the --versus-reference configs to time (default: all)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: torch's, one per core); 1 on cores shared with other jobs, where "
                        "OpenMP threads wait on each other and steps slow several-fold and erratically")
    args = p.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.versus_reference:
        versus_reference(args.batch_size, args.rounds, args.pairs)
        return

    torch.manual_seed(0)
    peak = matmul_gflops()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32 matmul {peak:.1f} GFLOP/s")
    print(f"{'config':10} {'mode':8} {'batch':>5} {'img/s':>8} {'GFLOP/s':>8} {'MFU':>6}")
    schedule = NoiseSchedule()
    for name in args.configs:
        model = build_dit(name, input_size=args.image_size, in_channels=3, num_classes=10, learn_sigma=False)
        x0 = torch.randn(args.batch_size, 3, args.image_size, args.image_size)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        modes = {"train": train_step_fn(model.train(), schedule, opt, x0),
                 "extract": extract_step_fn(model, schedule, x0)}
        for mode, step in modes.items():
            flops, sec = measure(step, args.steps)
            gflops = flops / sec / 1e9
            print(f"{name:10} {mode:8} {args.batch_size:5d} {args.batch_size / sec:8.1f} {gflops:8.1f} "
                  f"{gflops / peak:6.1%}")
            if args.profile:
                with torch.profiler.profile() as prof:
                    step()
                print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
