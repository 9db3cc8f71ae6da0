"""Policies that draw t uniformly from a fixed set of timesteps, with weight 1.

`uniform` (all T timesteps) is DiT's reference behaviour; `uniform-subset` (K stratified timesteps) is the
heuristic baseline; `fixed` trains on a user-given set. None of them learns from feedback.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from aselect_core.diffusion import NoiseSchedule
from aselect_core.policies.base import TimestepPolicy, register_policy


class TimestepSetPolicy(TimestepPolicy):
    """Uniform over `self.timesteps` (K,) int64, sorted and distinct."""

    def __init__(self, timesteps: Tensor, num_timesteps: int, seed: int, schedule: NoiseSchedule | None):
        super().__init__(num_timesteps, seed, schedule)
        self.timesteps = timesteps  # (K,)

    def draw(self, batch_size: int, step: int) -> tuple[Tensor, Tensor]:
        idx = torch.randint(0, len(self.timesteps), (batch_size,), generator=self.generator)  # (B,)
        return self.timesteps[idx], torch.ones(batch_size, dtype=torch.float32)

    def distribution(self) -> Tensor:
        p = torch.zeros(self.num_timesteps, dtype=torch.float64)
        p[self.timesteps] = 1.0 / len(self.timesteps)
        return p


@register_policy("uniform")
class UniformPolicy(TimestepSetPolicy):
    """t ~ U{0, ..., T-1}: the DiT / DDPM reference."""

    def __init__(self, num_timesteps: int = 1000, seed: int = 0, schedule: NoiseSchedule | None = None):
        super().__init__(torch.arange(num_timesteps), num_timesteps, seed, schedule)


@register_policy("uniform-subset")
class UniformSubsetPolicy(TimestepSetPolicy):
    """t uniform over K stratified timesteps: the centres floor((k + 1/2) T / K) of K equal strata of [0, T)."""

    def __init__(self, num_timesteps: int = 1000, seed: int = 0, schedule: NoiseSchedule | None = None,
                 k: int = 10):
        if not isinstance(k, int) or not 1 <= k <= num_timesteps:
            raise ValueError(f"uniform-subset policy: k expected an integer in [1, {num_timesteps}], got {k!r}")
        centres = ((torch.arange(k, dtype=torch.float64) + 0.5) * num_timesteps / k).floor().long()  # (K,)
        super().__init__(centres, num_timesteps, seed, schedule)
        self.k = k


@register_policy("fixed")
class FixedPolicy(TimestepSetPolicy):
    """t uniform over a user-given set of timesteps; the default {0, T//2, T-1} is {0, 500, 999} at T = 1000."""

    def __init__(self, num_timesteps: int = 1000, seed: int = 0, schedule: NoiseSchedule | None = None,
                 timesteps: Sequence[int] | None = None):
        chosen = [0, num_timesteps // 2, num_timesteps - 1] if timesteps is None else timesteps
        if isinstance(chosen, int) or not all(isinstance(v, int) and 0 <= v < num_timesteps for v in chosen) \
                or len(chosen) == 0:
            raise ValueError(f"fixed policy: timesteps expected a non-empty list of integers in "
                             f"[0, {num_timesteps}), got {timesteps!r}")
        super().__init__(torch.tensor(sorted(set(chosen)), dtype=torch.int64), num_timesteps, seed, schedule)
