"""Training objectives (`TrainConfig.objective`): which model a run trains and what one step's loss is.

- `denoise` (default): a DiT predicts the noise of x_t at the timesteps the policy draws (MSE on eps).
- `mae`: the masked autoencoder of the same encoder shape (`aselect_core.model.mae`) reconstructs the masked
  patches of the clean image. It has no timesteps, so the run's policy must be `fixed` at t = 0 (the curriculum
  then records one effective timestep, the seed's "single view"), and it reads no labels.

Counted cost, the same rule for both: one forward of one image through the model is 1 image-pass and its
backward 2, so a step costs 3·B whatever the objective. For the MAE that holds regardless of masking: its
encoder sees a quarter of the tokens and the decoder is light, so its true FLOPs per step are lower than the
DiT's and the count charges it at least as much as a DiT of the same shape; comparisons at equal counted cost
are therefore never tilted in the MAE's favour.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aselect_core.datasets import ImageDataset
from aselect_core.diffusion import NoiseSchedule
from aselect_core.model import DiT, LayerKey, build_dit, build_mae, mae_metadata
from aselect_core.policies.base import FeatureFn


@dataclass(frozen=True)
class Objective:
    """What the trainer needs of an objective.

    build(config, data) -> model; loss(model, schedule, x0, y, t) -> per-image loss (B,), where model may be
    DDP-wrapped (only its forward is called) and y is None for the null class; metadata(model) -> safetensors
    metadata that lets the loader rebuild it; features(model, schedule) -> the pooled-feature callable policies
    may use, or None. `policy` pins the timestep policy (name, kwargs) when the objective has no choice of t;
    `conditional` says whether it can read labels.
    """

    build: Callable[[Any, ImageDataset], nn.Module]
    loss: Callable[[nn.Module, NoiseSchedule, Tensor, Tensor | None, Tensor], Tensor]
    metadata: Callable[[nn.Module], dict[str, str]]
    features: Callable[[nn.Module, NoiseSchedule], FeatureFn | None]
    policy: tuple[str, dict[str, Any]] | None = None
    conditional: bool = True


# -- denoise ----------------------------------------------------------------------------------------------------
def build_dit_for(config: Any, data: ImageDataset) -> DiT:
    """The DiT `config.model` sized for `data` (config is a `TrainConfig`)."""
    return build_dit(config.model, input_size=data.image_size, in_channels=data.channels,
                     num_classes=data.num_classes, class_dropout_prob=config.class_dropout_prob,
                     learn_sigma=config.learn_sigma)


def denoise_loss(model: nn.Module, schedule: NoiseSchedule, x0: Tensor, y: Tensor | None, t: Tensor) -> Tensor:
    """Per-image MSE (B,) between the noise and the DiT's eps prediction at x_t = q_sample(x0, t, noise)."""
    noise = torch.randn_like(x0)  # (B, C, H, W)
    xt = schedule.q_sample(x0, t, noise)
    eps = model(xt, t, y)[:, : x0.shape[1]].float()  # (B, C, H, W); learned-sigma channels dropped
    return F.mse_loss(eps, noise, reduction="none").mean(dim=(1, 2, 3))


def dit_metadata(model: DiT) -> dict[str, str]:
    """safetensors metadata that lets `load_dit` rebuild the architecture."""
    return {"aselect.dit": json.dumps({"name": model.config_name, **model.config})}


def dit_features(model: DiT, schedule: NoiseSchedule) -> FeatureFn:
    """x0 (B,C,H,W), t (B,) -> mean-pooled null-class tokens of the middle block at a fresh x_t, (B, D); `noise`
    (B,C,H,W) fixes x_t's noise (`distributed.sharded_features` draws it for the whole gathered batch)."""
    layer = model.config["depth"] // 2

    def features(x0: Tensor, t: Tensor, noise: Tensor | None = None) -> Tensor:
        with torch.no_grad():
            xt = schedule.q_sample(x0, t, noise)
            return model.forward_features(xt, t, None, layers=[layer])[str(LayerKey.block(layer))].mean(dim=1)
    return features


# -- mae --------------------------------------------------------------------------------------------------------
def build_mae_for(config: Any, data: ImageDataset) -> nn.Module:
    """The MAE whose encoder has the shape of `config.model` (a DiT config name)."""
    return build_mae(config.model, input_size=data.image_size, in_channels=data.channels)


def mae_loss(model: nn.Module, schedule: NoiseSchedule, x0: Tensor, y: Tensor | None, t: Tensor) -> Tensor:
    """Per-image MSE (B,) on the masked patches of the clean x0 (t and y unused: an MAE reads neither)."""
    return model(x0)[0].float()


OBJECTIVES: dict[str, Objective] = {
    "denoise": Objective(build=build_dit_for, loss=denoise_loss, metadata=dit_metadata, features=dit_features),
    "mae": Objective(build=build_mae_for, loss=mae_loss, metadata=mae_metadata, features=lambda model, s: None,
                     policy=("fixed", {"timesteps": [0]}), conditional=False),
}
