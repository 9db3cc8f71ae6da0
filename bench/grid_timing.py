"""Wall time of a full timestep × layer probe grid: feature extraction, then one linear probe per cell.

The issue's yardstick: a 20-timestep × 12-layer grid on mnist5k with a small DiT must take minutes on 2 CPU
cores. The DiT is freshly initialised with random adaLN gates (the time does not depend on training), so no
run dir is needed. Usage:

    python bench/grid_timing.py [--model DiT-S/4] [--image-size 16] [--n-images 1000] [--timesteps 20]
"""
from __future__ import annotations

import argparse
import time

import torch

from analysis.baselines import random_init_dit
from analysis.features import extract_features
from analysis.probe import probe_grid
from analysis.selection import default_timesteps
from aselect_core.datasets import load_dataset
from aselect_core.model import build_dit


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="mnist5k")
    p.add_argument("--model", default="DiT-S/4")
    p.add_argument("--image-size", type=int, default=16)
    p.add_argument("--n-images", type=int, default=1000)
    p.add_argument("--timesteps", type=int, default=20)
    args = p.parse_args()

    data = load_dataset(args.data, "train", args.image_size)
    like = build_dit(args.model, input_size=args.image_size, in_channels=data.channels, num_classes=data.num_classes,
                     learn_sigma=False)
    model = random_init_dit(like, init="random-gates")
    depth = model.config["depth"]
    timesteps = default_timesteps(1000, args.timesteps)
    t0 = time.perf_counter()
    bank = extract_features(model, args.data, timesteps, list(range(depth)), args.n_images, seed=0, cache=False)
    t_extract = time.perf_counter() - t0
    t0 = time.perf_counter()
    grid = probe_grid(bank, knn=True)
    t_probe = time.perf_counter() - t0
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.model} at {args.image_size}px, "
          f"{args.data}, {len(timesteps)} timesteps x {depth} layers = {len(grid)} cells")
    print(f"extraction: {t_extract:.1f} s for {bank.image_passes} image-passes "
          f"({bank.image_passes / t_extract:.0f} img-passes/s)")
    print(f"probes:     {t_probe:.1f} s ({t_probe / len(grid):.2f} s per cell, linear + k-NN)")
    print(f"total:      {(t_extract + t_probe) / 60:.1f} min")


if __name__ == "__main__":
    main()
