"""Atomic, verifiable checkpoints: a safetensors file of named tensors plus a JSON sidecar written last.

A checkpoint `step_XXXXXXX.safetensors` is good when its sidecar `step_XXXXXXX.json` exists and records the
file's sha256. Writes go to a temp file, are fsynced and renamed, so a kill at any moment leaves either the old
state or the new one (`aselect_core.io`). Nothing here unpickles anything.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor

from aselect_core.io import (CheckpointError, atomic_write_bytes, atomic_write_json, sha256_hex, sidecar_path,
                             verified_bytes)


def checkpoint_name(step: int) -> str:
    return f"step_{step:07d}"


def save_checkpoint(ckpt_dir: Path, step: int, tensors: dict[str, Tensor], metadata: dict[str, str],
                    sidecar: dict[str, Any]) -> Path:
    """Write tensors (+ string metadata) then the sidecar; returns the safetensors path."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    data = st_save(tensors, metadata=metadata)
    path = ckpt_dir / f"{checkpoint_name(step)}.safetensors"
    atomic_write_bytes(path, data)
    atomic_write_json(sidecar_path(path), {**sidecar, "step": step, "sha256": sha256_hex(data)})
    return path


def load_checkpoint(path: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read and verify one checkpoint; raises CheckpointError (one line) when it is not good."""
    data, sidecar = verified_bytes(path)
    try:
        tensors = st_load(data)
    except (SafetensorError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    return tensors, sidecar


def verify_checkpoint(path: Path) -> dict[str, Any]:
    """The sidecar of a complete checkpoint (both files there, sha256 matching); CheckpointError otherwise."""
    return verified_bytes(path)[1]


def is_slim(sidecar: dict[str, Any]) -> bool:
    """True for a slim export (EMA weights only, see `export.py`): loadable, not resumable."""
    return bool(sidecar.get("slim"))


def list_checkpoints(ckpt_dir: Path) -> list[Path]:
    """Checkpoint files in the folder, oldest first."""
    return sorted(ckpt_dir.glob("step_*.safetensors")) if ckpt_dir.is_dir() else []


def latest_good_checkpoint(ckpt_dir: Path, warn=print) -> tuple[Path, dict[str, Tensor], dict[str, Any]] | None:
    """The newest checkpoint that verifies, skipping (and warning about) bad ones; None if there is none."""
    for path in reversed(list_checkpoints(ckpt_dir)):
        try:
            tensors, sidecar = load_checkpoint(path)
        except CheckpointError as e:
            warn(f"skipping bad checkpoint: {e}")
            continue
        return path, tensors, sidecar
    return None


def prune_checkpoints(ckpt_dir: Path, keep_last: int) -> None:
    """Delete all but the newest `keep_last` checkpoints (file and sidecar)."""
    for path in list_checkpoints(ckpt_dir)[:-keep_last]:
        path.with_suffix(".json").unlink(missing_ok=True)
        path.unlink(missing_ok=True)


def prefixed(prefix: str, state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {f"{prefix}.{k}": v for k, v in state.items()}


def unprefixed(prefix: str, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    p = prefix + "."
    return {k[len(p):]: v for k, v in tensors.items() if k.startswith(p)}


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], list[dict[str, Any]]]:
    """Flatten an optimizer state dict into tensors `{param_idx}.{key}` plus JSON-able param groups."""
    sd = optimizer.state_dict()
    tensors = {f"{i}.{k}": torch.as_tensor(v) for i, st in sd["state"].items() for k, v in st.items()}
    return tensors, sd["param_groups"]


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, Tensor],
                      param_groups: list[dict[str, Any]]) -> None:
    state: dict[int, dict[str, Tensor]] = {}
    for key, v in tensors.items():
        i, name = key.split(".", 1)
        state.setdefault(int(i), {})[name] = v
    optimizer.load_state_dict({"state": state, "param_groups": param_groups})
