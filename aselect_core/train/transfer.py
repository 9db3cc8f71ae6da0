"""Starting a run from another one: its learned selector (transfer across datasets), or its DiT weights.

Selector transfer (the seed's open question: does a learned timestep policy carry across datasets?):

`--policy learned --policy-arg selector_from=RUN_DIR` starts a run's selector g_φ from another learned run's (its
latest checkpoint, rank 0's copy) instead of the uniform initialisation; `--policy-arg freeze_selector=true`
keeps it fixed (no REINFORCE updates, no reward passes), so only the DiT trains under the transferred p_φ(t | x₀).
The transferred network must see the same image shape (channels × size) as the one it was trained on.

A warm start (`init_from=RUN_DIR`, `--init-from`) continues another run of the same model when only its EMA
weights are left (a slim export cannot be resumed): model and EMA start from them, the step and the counted
image-passes carry on from the source's, and the optimiser starts fresh (AdamW moments at zero).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from aselect_core.train.checkpoint import load_checkpoint, unprefixed
from aselect_core.train.config import SELECTOR_FROM as SOURCE_KEY  # the trainer resolves it; a policy reads no run
from aselect_core.train.rundir import RunDir


def policy_arguments(policy_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The policy's own keyword arguments: `policy_kwargs` less the run it transfers a selector from."""
    return {k: v for k, v in policy_kwargs.items() if k != SOURCE_KEY}


def selector_state(run: str | Path) -> dict[str, Tensor]:
    """The learned policy's state (rank 0) at `run`'s latest checkpoint, checked: one-line errors otherwise."""
    rd = RunDir(Path(run))
    config = rd.config()
    if config.policy != "learned":
        raise ValueError(f"{SOURCE_KEY}: {rd.path} trained with policy {config.policy!r}; a selector needs policy "
                         "'learned'")
    checkpoint = rd.latest_checkpoint()
    if checkpoint is None:
        raise ValueError(f"{SOURCE_KEY}: {rd.path} has no checkpoint yet (latest.json missing)")
    tensors, _ = load_checkpoint(checkpoint)
    state = unprefixed("policy.0", tensors)
    if "image_shape" not in state:
        raise ValueError(f"{SOURCE_KEY}: {checkpoint} holds no selector network (saved before the first batch)")
    return state


def check_image_shape(source: str | Path, trained_on: tuple[int, ...], images: tuple[int, ...]) -> None:
    """A one-line error when this run's images (C, H, W) differ from those the transferred selector saw."""
    if tuple(trained_on) != tuple(images):
        raise ValueError(f"{SOURCE_KEY}: {source}'s selector was trained on images of shape {tuple(trained_on)}, "
                         f"this run's data are {tuple(images)}; transfer needs the same channels and size")


@dataclass(frozen=True)
class WarmStart:
    """What a run continued from another one starts with: the source's EMA weights, step and counted cost."""

    weights: dict[str, Tensor]
    step: int
    image_passes: int
    wall_seconds: float


def warm_start(run: str | Path) -> WarmStart:
    """The EMA weights of `run`'s latest checkpoint (float32) and where it stopped; one-line errors otherwise."""
    rd = RunDir(Path(run))
    checkpoint = rd.latest_checkpoint()
    if checkpoint is None:
        raise ValueError(f"init_from: {rd.path} has no checkpoint (latest.json missing)")
    tensors, sidecar = load_checkpoint(checkpoint)
    weights = {k: v.float() if v.is_floating_point() else v for k, v in unprefixed("ema", tensors).items()}
    return WarmStart(weights, int(sidecar["step"]), int(sidecar["image_passes"]), float(sidecar["wall_seconds"]))


def load_weights(module: torch.nn.Module, weights: dict[str, Tensor], source: str | Path) -> None:
    """`module.load_state_dict(weights)` with a one-line error naming the source when the shapes differ."""
    try:
        module.load_state_dict({k: v.to(next(module.parameters()).device) for k, v in weights.items()})
    except RuntimeError as e:
        first = next((line.strip() for line in str(e).splitlines()[1:] if line.strip()), str(e))
        raise ValueError(f"init_from: {source}'s weights do not fit this run's model ({first})") from None
