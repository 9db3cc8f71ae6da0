"""Discrete-time Gaussian noise schedules: q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I).

Timesteps are integers in [0, T); t = 0 is the least noisy. `linear` is DiT's / DDPM's beta schedule
(beta from 1e-4 to 0.02, scaled to T); `cosine` is Nichol & Dhariwal's (2021) squared-cosine abar.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor


def _linear_betas(num_timesteps: int, max_beta: float = 0.999) -> Tensor:
    """DDPM/DiT linear betas, rescaled so that any T covers the same noise range as T = 1000.

    Clipped at max_beta like the cosine schedule: for T <= 20 the rescaled end beta reaches 1 or more,
    which would make abar zero or negative.
    """
    scale = 1000.0 / num_timesteps
    return torch.linspace(scale * 1e-4, scale * 0.02, num_timesteps, dtype=torch.float64).clamp(max=max_beta)


def _cosine_betas(num_timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """Improved-DDPM cosine schedule: abar(u) = cos²((u + s) / (1 + s) · π/2), betas clipped at max_beta."""
    u = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    abar = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - abar[1:] / abar[:-1]).clamp(max=max_beta)


SCHEDULES: dict[str, Callable[[int], Tensor]] = {"linear": _linear_betas, "cosine": _cosine_betas}


class NoiseSchedule:
    """A variance-preserving schedule with T discrete steps; all tables are float64 on the CPU."""

    def __init__(self, kind: str = "linear", num_timesteps: int = 1000):
        if kind not in SCHEDULES:
            raise ValueError(f"schedule kind: expected one of {sorted(SCHEDULES)}, got {kind!r}")
        if num_timesteps < 2:
            raise ValueError(f"num_timesteps: expected an integer >= 2, got {num_timesteps}")
        self.kind = kind
        self.num_timesteps = num_timesteps
        self.betas = SCHEDULES[kind](num_timesteps)  # (T,)
        self.alphas_cumprod = torch.cumprod(1.0 - self.betas, dim=0)  # (T,) abar_t, decreasing

    def _gather(self, table: Tensor, t: Tensor, like: Tensor) -> Tensor:
        """table[t] reshaped to broadcast against `like` (B, ...), in like's dtype and device."""
        out = table.to(like.device)[t.to(like.device).long()].to(like.dtype)
        return out.view(-1, *([1] * (like.dim() - 1)))

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor | None = None) -> Tensor:
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise, for x0 (B, ...) and t (B,)."""
        noise = torch.randn_like(x0) if noise is None else noise
        abar = self._gather(self.alphas_cumprod, t, x0)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise

    def predict_x0(self, xt: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """Invert q_sample given the noise (or a prediction of it)."""
        abar = self._gather(self.alphas_cumprod, t, xt)
        return (xt - (1 - abar).sqrt() * eps) / abar.sqrt()

    def snr(self, t: Tensor | int) -> Tensor:
        """Signal-to-noise ratio abar_t / (1 - abar_t), float64, decreasing in t."""
        abar = self.alphas_cumprod[torch.as_tensor(t).long()]
        return abar / (1 - abar)

    def log_snr(self, t: Tensor | int) -> Tensor:
        """log SNR(t) = log abar_t - log(1 - abar_t), float64."""
        abar = self.alphas_cumprod[torch.as_tensor(t).long()]
        return abar.log() - torch.log1p(-abar)

    def sigma(self, t: Tensor | int) -> Tensor:
        """Noise level of the equivalent variance-exploding process, sigma = sqrt((1 - abar) / abar)."""
        return self.snr(t).rsqrt()

    def timestep_of_sigma(self, sigma: Tensor) -> Tensor:
        """The discrete timestep whose sigma is nearest in log space (used to map EDM/SD3 samplers)."""
        log_sig = self.sigma(torch.arange(self.num_timesteps)).log()  # (T,) increasing
        idx = torch.searchsorted(log_sig, sigma.double().log().clamp(log_sig[0], log_sig[-1]))
        idx = idx.clamp(1, self.num_timesteps - 1)
        left_closer = (sigma.double().log() - log_sig[idx - 1]).abs() <= (log_sig[idx] - sigma.double().log()).abs()
        return torch.where(left_closer, idx - 1, idx).long()

    def __repr__(self) -> str:
        return f"NoiseSchedule(kind={self.kind!r}, num_timesteps={self.num_timesteps})"
