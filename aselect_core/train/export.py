"""Slim exports of finished runs: one checkpoint holding only the EMA weights, in half precision, for shipping.

A slim run keeps its config, metrics, curriculum and analyses, and `load_dit(run)` reads it like any other;
it can no longer be resumed (no optimiser, policy or RNG state), which the trainer says in one line.
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open

from aselect_core.train import checkpoint as ck
from aselect_core.train.rundir import RunDir

KEEP_FLOAT32 = ("ema.pos_embed",)  # the fixed sin-cos table: exact values, few numbers


def slim_run(run: str | Path, dtype: torch.dtype = torch.float16) -> Path:
    """Replace the run's checkpoints by its latest one's EMA weights in `dtype`; returns the new checkpoint path."""
    rd = RunDir(Path(run))
    path = rd.latest_checkpoint()
    if path is None:
        raise ValueError(f"{rd.latest_path}: no checkpoint to slim")
    tensors, sidecar = ck.load_checkpoint(path)
    if ck.is_slim(sidecar):
        return path
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    ema = {k: v if k in KEEP_FLOAT32 or not v.is_floating_point() else v.to(dtype)
           for k, v in tensors.items() if k.startswith("ema.")}
    for old in ck.list_checkpoints(rd.checkpoints):
        old.with_suffix(".json").unlink(missing_ok=True)
        old.unlink()
    keep = {k: v for k, v in sidecar.items() if k not in ("sha256", "param_groups")}
    new = ck.save_checkpoint(rd.checkpoints, sidecar["step"], ema, metadata, {**keep, "slim": str(dtype)})
    rd.write_latest(**{**(rd.latest() or {}), "checkpoint": str(new.relative_to(rd.path))})
    return new
