"""Selector transfer (the seed's open question: does a learned timestep policy carry across datasets?).

`--policy learned --policy-arg selector_from=RUN_DIR` starts a run's selector g_φ from another learned run's (its
latest checkpoint, rank 0's copy) instead of the uniform initialisation; `--policy-arg freeze_selector=true`
keeps it fixed (no REINFORCE updates, no reward passes), so only the DiT trains under the transferred p_φ(t | x₀).
The transferred network must see the same image shape (channels × size) as the one it was trained on.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

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
