"""Continuous noise-level laws of recent samplers, mapped onto the discrete schedule.

Both draw z ~ N(0, 1) and map it monotonically to a timestep:
- `lognormal` (EDM, Karras et al. 2022; k-diffusion): ln σ = P_mean + P_std z, then t is the timestep whose
  σ_t = sqrt((1 - ᾱ_t) / ᾱ_t) is nearest in log σ (`NoiseSchedule.timestep_of_sigma`). So t receives the
  ln σ between the midpoints (in ln σ) to its neighbours; σ beyond the schedule's range go to t = 0 or T-1.
- `logit-normal` (Stable Diffusion 3, Esser et al. 2024): u = sigmoid(m + s z) in (0, 1), t = floor(u T),
  so t receives u in [t/T, (t+1)/T).
`distribution()` is exact: the normal mass of each t's z-interval. Weights are 1: these samplers reweight
the objective by design (they concentrate training on mid noise levels), unlike `loss-aware`.
"""
from __future__ import annotations

import torch
from torch import Tensor

from aselect_core.diffusion import NoiseSchedule
from aselect_core.policies.base import TimestepPolicy, register_policy


class NormalLawPolicy(TimestepPolicy):
    """t = timestep_of(z), z ~ N(0, 1), for a monotone map given by its (T+1,) z-interval edges."""

    def timestep_of(self, z: Tensor) -> Tensor:
        """(B,) float64 standard normals -> (B,) int64 timesteps."""
        raise NotImplementedError(f"{type(self).__name__}.timestep_of")

    def z_edges(self) -> Tensor:
        """(T+1,) float64 increasing, from -inf to +inf: t = timestep_of(z) exactly when edges[t] <= z < edges[t+1]."""
        raise NotImplementedError(f"{type(self).__name__}.z_edges")

    def draw(self, batch_size: int, step: int) -> tuple[Tensor, Tensor]:
        z = torch.randn(batch_size, generator=self.generator, dtype=torch.float64)  # (B,)
        return self.timestep_of(z), torch.ones(batch_size, dtype=torch.float32)

    def distribution(self) -> Tensor:
        return torch.special.ndtr(self.z_edges()).diff()  # (T,)


def _check_std(policy: str, field: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{policy} policy: {field} expected a positive number, got {value!r}")


@register_policy("lognormal")
class LogNormalPolicy(NormalLawPolicy):
    """EDM's ln σ ~ N(p_mean, p_std²) on the schedule's σ_t (default schedule: linear with T steps)."""

    def __init__(self, num_timesteps: int = 1000, seed: int = 0, schedule: NoiseSchedule | None = None,
                 p_mean: float = -1.2, p_std: float = 1.2):
        super().__init__(num_timesteps, seed, schedule or NoiseSchedule("linear", num_timesteps))
        _check_std("lognormal", "p_std", p_std)
        self.p_mean, self.p_std = p_mean, p_std

    def timestep_of(self, z: Tensor) -> Tensor:
        return self.schedule.timestep_of_sigma((self.p_mean + self.p_std * z).exp())

    def z_edges(self) -> Tensor:
        log_sigma = self.schedule.sigma(torch.arange(self.num_timesteps)).log()  # (T,) increasing
        mid = (log_sigma[:-1] + log_sigma[1:]) / 2  # (T-1,) boundaries between neighbouring timesteps
        inf = torch.tensor([torch.inf], dtype=torch.float64)
        return torch.cat([-inf, (mid - self.p_mean) / self.p_std, inf])


@register_policy("logit-normal")
class LogitNormalPolicy(NormalLawPolicy):
    """SD3's t/T = sigmoid(N(m, s²)), discretised by t = floor(u T)."""

    def __init__(self, num_timesteps: int = 1000, seed: int = 0, schedule: NoiseSchedule | None = None,
                 m: float = 0.0, s: float = 1.0):
        super().__init__(num_timesteps, seed, schedule)
        _check_std("logit-normal", "s", s)
        self.m, self.s = m, s

    def timestep_of(self, z: Tensor) -> Tensor:
        u = torch.sigmoid(self.m + self.s * z)  # (B,) in (0, 1)
        return (u * self.num_timesteps).floor().long().clamp(0, self.num_timesteps - 1)

    def z_edges(self) -> Tensor:
        u = torch.arange(self.num_timesteps + 1, dtype=torch.float64) / self.num_timesteps  # (T+1,) 0 ... 1
        return (torch.logit(u) - self.m) / self.s  # logit(0) = -inf, logit(1) = +inf
