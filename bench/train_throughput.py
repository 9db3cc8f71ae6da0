"""Training and feature-extraction throughput of small DiTs, as a fraction of this machine's matmul speed.

Prints img/s, achieved GFLOP/s (FLOPs counted by torch's FlopCounterMode on one step) and the model FLOP
utilisation: achieved / float32 matmul GFLOP/s measured in the same run. Usage:

    python bench/train_throughput.py [--configs DiT-T/4 DiT-S/4] [--batch-size 128] [--steps 10] [--profile]
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from aselect_core.diffusion import NoiseSchedule
from aselect_core.model import build_dit


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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=["DiT-T/4", "DiT-S/4"])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--profile", action="store_true", help="print torch.profiler's top ops for each training step")
    args = p.parse_args()

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
