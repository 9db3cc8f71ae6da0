"""The timestep-policy contract: what a policy is asked (`sample`), what it learns from (`observe`), and the registry.

A policy decides which diffusion timesteps training spends its steps on. The trainer calls, each step,
`t, w = policy.sample(x0, step)` and minimises `mean(w * loss_t)`; then `policy.observe(Feedback(...))`.
In DDP the trainer all-gathers the feedback, so every rank's policy state stays identical while each rank
samples from its own `torch.Generator`. `state_dict()` holds tensors only (it is stored in safetensors),
the generator's state included, so a resumed run draws exactly the timesteps it would have drawn.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable, TypeVar

import torch
from torch import Tensor

from aselect_core.diffusion import NoiseSchedule

FeatureFn = Callable[[Tensor, Tensor], Tensor]  # x0 (B,C,H,W), t (B,) -> pooled DiT features (B, D)


@dataclass
class Feedback:
    """What a policy may learn from after a training step (gathered over all ranks in DDP)."""

    x0: Tensor  # (B, C, H, W) clean images in [-1, 1]
    t: Tensor  # (B,) int64 timesteps trained on
    loss: Tensor  # (B,) per-sample denoising loss at t, detached
    step: int  # optimiser step the batch belongs to (0-based)
    y: Tensor | None = None  # (B,) int64 labels, when the data has them
    features: FeatureFn | None = None  # pooled DiT features of x0 at t; each call costs B image-passes
    world_size: int = 1  # ranks the batch was gathered from


class TimestepPolicy:
    """Base class: a seeded generator over the timesteps [0, T). Subclasses implement `draw` and `distribution`."""

    name: str = "base"

    def __init__(self, num_timesteps: int = 1000, seed: int = 0, schedule: NoiseSchedule | None = None):
        if not isinstance(num_timesteps, int) or num_timesteps < 1:
            raise ValueError(f"num_timesteps: expected a positive integer, got {num_timesteps!r}")
        if schedule is not None and schedule.num_timesteps != num_timesteps:
            raise ValueError(f"schedule: expected {num_timesteps} timesteps, got {schedule.num_timesteps}")
        self.num_timesteps = num_timesteps
        self.schedule = schedule
        self.generator = torch.Generator().manual_seed(seed)

    def sample(self, x0: Tensor, step: int) -> tuple[Tensor, Tensor]:
        """Timesteps t (B,) int64 in [0, T) and loss weights w (B,) float32 for x0 (B, C, H, W), on its device."""
        check_batch(x0)
        t, w = self.draw(x0.shape[0], step)  # (B,), (B,) on the CPU
        return t.to(x0.device), w.to(x0.device)

    def draw(self, batch_size: int, step: int) -> tuple[Tensor, Tensor]:
        """`sample` on the CPU, from `self.generator`: t (B,) int64 and w (B,) float32."""
        raise NotImplementedError(f"{type(self).__name__}.draw")

    def observe(self, feedback: Feedback) -> dict[str, float]:
        """Learn from a step's outcome; returns metrics to log (an `image_passes` entry counts extra DiT work)."""
        return {}

    def distribution(self) -> Tensor:
        """The current marginal over timesteps, (T,) float64 summing to 1."""
        raise NotImplementedError(f"{type(self).__name__}.distribution")

    def class_distributions(self) -> dict[int, Tensor] | None:
        """Per-label marginals {y: (T,) float64} for policies whose p(t) depends on the image; None otherwise."""
        return None

    def state_dict(self) -> dict[str, Tensor]:
        """Everything needed to resume exactly, as tensors (scalars as 0-d tensors)."""
        return {"generator": self.generator.get_state(), "num_timesteps": torch.tensor(self.num_timesteps)}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore what `state_dict` returned; refuses a state written for another number of timesteps."""
        for key in self.state_dict():
            if key not in state:
                raise ValueError(f"{self.name} policy state: missing key {key!r}")
        if int(state["num_timesteps"]) != self.num_timesteps:
            raise ValueError(f"{self.name} policy state: num_timesteps expected {self.num_timesteps}, "
                             f"got {int(state['num_timesteps'])}")
        self.generator.set_state(state["generator"].to(torch.uint8).cpu())

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, num_timesteps={self.num_timesteps})"


def check_batch(x0: Tensor) -> None:
    """Refuse anything but a non-empty batch: `sample` is asked for one timestep per image."""
    if x0.dim() < 1 or x0.shape[0] < 1:
        raise ValueError(f"x0: expected a batch (B, C, H, W) with B >= 1, got shape {tuple(x0.shape)}")


def effective_timesteps(p: Tensor) -> float:
    """exp(entropy of p): the number of timesteps p spreads over (K for uniform over K, 1 for a point mass)."""
    p = p.double()
    nz = p[p > 0]
    return float(torch.exp(-(nz * nz.log()).sum()))


POLICIES: dict[str, type[TimestepPolicy]] = {}

P = TypeVar("P", bound=type[TimestepPolicy])


def register_policy(name: str) -> Callable[[P], P]:
    """Class decorator: make the policy available to `make_policy(name, ...)`."""
    def add(cls: P) -> P:
        if name in POLICIES:
            raise ValueError(f"policy name {name!r} is already registered by {POLICIES[name].__name__}")
        cls.name = name
        POLICIES[name] = cls
        return cls
    return add


def make_policy(name: str, num_timesteps: int = 1000, seed: int = 0, schedule: NoiseSchedule | None = None,
                **kw) -> TimestepPolicy:
    """Build a registered policy; policy-specific parameters go in `kw` (e.g. `k=10` for `uniform-subset`)."""
    if name not in POLICIES:
        raise ValueError(f"policy: expected one of {sorted(POLICIES)}, got {name!r}")
    cls = POLICIES[name]
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "num_timesteps", "seed",
                                                                                   "schedule")]
    for key in kw:
        if key not in accepted:
            raise ValueError(f"{name} policy: unknown parameter {key!r}; expected one of {accepted}")
    return cls(num_timesteps=num_timesteps, seed=seed, schedule=schedule, **kw)
