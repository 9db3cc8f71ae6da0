"""Command-line flags of a training run, shared by `aselect train` and `python -m aselect_core.train`."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from aselect_core.train.config import ConfigError, TrainConfig
from aselect_core.train.rundir import RunDir

# flag -> (config field, type, help); flags left unset keep the --config file's (or the default) value
FLAGS: dict[str, tuple[str, type, str]] = {
    "--data": ("data", str, "dataset spec: an embedded name or folder:/npz:/cifar:/mnist: PATH"),
    "--model": ("model", str, "DiT config name, e.g. DiT-T/4"),
    "--objective": ("objective", str, "training objective: denoise (a DiT, default) or mae (the MAE baseline of "
                    "the --model's shape; needs --policy fixed --policy-arg timesteps=[0])"),
    "--policy": ("policy", str, "timestep policy: uniform, uniform-subset, fixed, loss-aware, learned, ..."),
    "--steps": ("steps", int, "optimiser steps in total (a resumed run continues to this)"),
    "--batch-size": ("batch_size", int, "images per step per process"),
    "--lr": ("lr", float, "AdamW learning rate"),
    "--seed": ("seed", int, "seed of data order, noise and policy"),
    "--image-size": ("image_size", int, "resize images to this side length"),
    "--checkpoint-every": ("checkpoint_every", int, "steps between checkpoints"),
    "--out": ("out", str, "run dir to write"),
    "--device": ("device", str, "auto, cpu or cuda (bf16 autocast on cuda)"),
    "--precision": ("precision", str, "auto (bf16 autocast on cuda, float32 on cpu), fp32, or bf16 (autocast on "
                    "the cpu too: faster on AVX512-BF16/AMX cpus, not bit-equal)"),
    "--ema-decay": ("ema_decay", float, "EMA decay of the weights, warmed up as min(decay, (1+step)/(10+step)) "
                    "unless the config sets ema_warmup: false"),
    "--warmup-steps": ("warmup_steps", int, "linear learning-rate warm-up steps"),
    "--schedule": ("schedule", str, "noise schedule: linear or cosine"),
    "--init-from": ("init_from", str, "continue another run (a slim export too): start model and EMA from its "
                    "latest EMA weights, at its step and counted image-passes, with a fresh optimiser"),
}


def parse_key_values(items: list[str], flag: str = "--policy-arg") -> dict[str, Any]:
    """`k=v` strings of a repeatable `flag` to a dict, values parsed as YAML scalars/lists (`k=10`, `k=[0,500]`)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag}: expected KEY=VALUE, got {item!r}")
        out[key] = yaml.safe_load(value)
    return out


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML/JSON file of TrainConfig fields; flags override it")
    for flag, (_, typ, help_) in FLAGS.items():
        p.add_argument(flag, type=typ, default=None, help=help_)
    p.add_argument("--policy-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="policy keyword argument (repeatable), e.g. --policy-arg k=10")
    p.add_argument("--conditional", action="store_true", default=None,
                   help="train class-conditionally (label dropout); default: unconditional (null class)")
    p.add_argument("--compile", action="store_true", default=None,
                   help="torch.compile the transformer blocks (minutes to compile; for long runs, on a GPU)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the run dir's latest good checkpoint, with its recorded config.json")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def base_config(args: argparse.Namespace) -> dict[str, Any]:
    """The settings flags start from: --config, else (with --resume) the run dir's own config.json, else defaults."""
    if args.config:
        return TrainConfig.from_file(args.config).to_dict()
    run = RunDir(Path(args.out)) if args.resume and args.out else None
    return run.config().to_dict() if run is not None and run.config_path.is_file() else {}


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    base = base_config(args)
    for flag, (name, _, _) in FLAGS.items():
        value = getattr(args, name)
        if value is not None:
            base[name] = value
    if args.policy_arg:
        base["policy_kwargs"] = {**base.get("policy_kwargs", {}), **parse_key_values(args.policy_arg)}
    if args.conditional:
        base["conditional"] = True
    if args.compile:
        base["compile"] = True
    base["resume"] = bool(args.resume)
    return TrainConfig.from_dict(base)
