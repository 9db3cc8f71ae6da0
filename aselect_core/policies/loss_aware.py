"""Loss-aware importance sampling of timesteps (Improved DDPM, Nichol & Dhariwal 2021, `LossSecondMomentResampler`).

Keeps the last `history` losses seen at each timestep. Until every timestep has a full history it samples
uniformly with weight 1; then p_t ∝ sqrt(E[L_t²]), mixed with `uniform_prob` of uniform, and each sample is
weighted by 1 / (T p_t) so that E_p[w L_t] = mean_t L_t: the objective stays the uniform one, only its variance
drops. With `bins` < T, timesteps share a history per bin of equal width (p is uniform within a bin): at
T = 1000 the per-timestep warm-up needs 10 000 samples, which a short run on a small dataset never reaches.
"""
from __future__ import annotations

import torch
from torch import Tensor

from aselect_core.diffusion import NoiseSchedule
from aselect_core.policies.base import Feedback, TimestepPolicy, register_policy


@register_policy("loss-aware")
class LossAwarePolicy(TimestepPolicy):
    """p_t ∝ sqrt(E[L²]) over the recent losses of t's bin, mixed with uniform; weights 1 / (T p_t)."""

    def __init__(self, num_timesteps: int = 1000, seed: int = 0, schedule: NoiseSchedule | None = None,
                 history: int = 10, uniform_prob: float = 0.001, bins: int | None = None):
        super().__init__(num_timesteps, seed, schedule)
        bins = num_timesteps if bins is None else bins
        if not isinstance(history, int) or history < 1:
            raise ValueError(f"loss-aware policy: history expected a positive integer, got {history!r}")
        if not 0.0 <= uniform_prob <= 1.0:
            raise ValueError(f"loss-aware policy: uniform_prob expected a number in [0, 1], got {uniform_prob!r}")
        if not isinstance(bins, int) or not 1 <= bins <= num_timesteps:
            raise ValueError(f"loss-aware policy: bins expected an integer in [1, {num_timesteps}], got {bins!r}")
        self.history, self.uniform_prob, self.bins = history, uniform_prob, bins
        edges = torch.linspace(0, num_timesteps, bins + 1, dtype=torch.float64).round().long()  # (bins+1,)
        self.bin_of_t = torch.bucketize(torch.arange(num_timesteps), edges[1:], right=True)  # (T,)
        self.bin_size = edges.diff().double()  # (bins,)
        self.losses = torch.zeros(bins, history, dtype=torch.float64)  # ring buffer of each bin's recent losses
        self.seen = torch.zeros(bins, dtype=torch.int64)  # losses observed per bin, ever

    def warmed_up(self) -> bool:
        return bool((self.seen >= self.history).all())

    def bin_distribution(self) -> Tensor:
        """(bins,) float64: the probability of each bin (uniform in t until warmed up)."""
        if not self.warmed_up():
            return self.bin_size / self.num_timesteps
        rms = self.losses.square().mean(dim=1).sqrt()  # (bins,)
        if rms.sum() <= 0:
            return self.bin_size / self.num_timesteps
        return (1 - self.uniform_prob) * rms / rms.sum() + self.uniform_prob * self.bin_size / self.num_timesteps

    def distribution(self) -> Tensor:
        return (self.bin_distribution() / self.bin_size)[self.bin_of_t]  # (T,)

    def draw(self, batch_size: int, step: int) -> tuple[Tensor, Tensor]:
        p = self.distribution()  # (T,)
        t = torch.multinomial(p, batch_size, replacement=True, generator=self.generator)  # (B,)
        w = 1.0 / (self.num_timesteps * p[t])  # (B,) exactly 1 while p is uniform
        return t, w.float()

    def observe(self, feedback: Feedback) -> dict[str, float]:
        """Append each sample's loss to its bin's history, in batch order (only the last `history` per bin stay)."""
        t, loss = feedback.t.detach().cpu().long(), feedback.loss.detach().cpu().double()
        if loss.shape != t.shape:
            raise ValueError(f"feedback.loss: expected shape {tuple(t.shape)} like feedback.t, got {tuple(loss.shape)}")
        b = self.bin_of_t[t]  # (B,)
        order = torch.sort(b, stable=True).indices  # (B,) samples grouped by bin, batch order kept within a bin
        b, loss = b[order], loss[order]
        rank = torch.arange(len(b)) - torch.searchsorted(b, b)  # (B,) position of each sample within its bin
        count = torch.bincount(b, minlength=self.bins)  # (bins,)
        keep = rank >= count[b] - self.history  # drop the ones that would be overwritten in this same batch
        slot = (self.seen[b] + rank) % self.history  # (B,) ring-buffer slot; the mean of squares is order-free
        self.losses[b[keep], slot[keep]] = loss[keep]
        self.seen += count
        return {"warmup_fraction": float((self.seen >= self.history).double().mean())}

    def state_dict(self) -> dict[str, Tensor]:
        return {**super().state_dict(), "losses": self.losses.clone(), "seen": self.seen.clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        super().load_state_dict(state)
        if tuple(state["losses"].shape) != tuple(self.losses.shape):
            raise ValueError(f"loss-aware policy state: losses expected shape {tuple(self.losses.shape)} "
                             f"(bins, history), got {tuple(state['losses'].shape)}")
        self.losses = state["losses"].double().cpu().clone()
        self.seen = state["seen"].long().cpu().clone()
