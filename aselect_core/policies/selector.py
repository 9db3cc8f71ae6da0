"""The A-SelecT selector network g_φ and the pure functions its objective is made of.

`Selector` maps a clean image x₀ to logits over K timestep bins. The objective pieces are small functions of
tensors (no policy state), so each can be tested against its closed form:
- `infonce_reward`: per-sample InfoNCE lower bound on I(x₀; features at t), ceiling log B;
- `timestep_entropy`: entropy over the T timesteps of a bin distribution spread uniformly within bins,
  whose exp is the effective number of timesteps (`base.effective_timesteps` of the spread (T,) vector).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Selector(nn.Module):
    """g_φ: x₀ (B, C, H, W) -> logits (B, K). Three 3×3 convolutions of stride 2, global mean pool, linear.

    Why a small CNN on x₀: it sees the image *before* any noise (the selection is about x₀, so the choice
    of t cannot depend on a noise draw made for that t), it costs no DiT pass (about 800 MACs per pixel at
    hidden 32), and its gradient never touches the DiT, so the bilevel problem stays two separate
    optimisers. Every convolution halves the resolution (the choice of t needs global, coarse content;
    full-resolution maps would cost most of the compute) and the global pool makes it indifferent to the
    image size (2×2 up to 256×256). The head's weight starts at zero and its bias at log(bin_size / T), so
    the untrained selector is exactly uniform over timesteps: training starts from DiT's reference
    curriculum and moves away only on evidence.
    """

    def __init__(self, in_channels: int, hidden: int, bin_size: Tensor):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(hidden, hidden, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(hidden, hidden, 3, stride=2, padding=1), nn.SiLU(),
        )
        self.head = nn.Linear(hidden, len(bin_size))
        with torch.no_grad():
            self.head.weight.zero_()
            self.head.bias.copy_((bin_size.double() / bin_size.sum()).log().float())

    def forward(self, x0: Tensor) -> Tensor:
        h = self.body(x0)  # (B, hidden, H/8, W/8)
        return self.head(h.mean(dim=(2, 3)))  # (B, K)


def infonce_reward(f1: Tensor, f2: Tensor, temperature: float) -> Tensor:
    """Per-sample InfoNCE reward (B,) in nats from two feature views (B, D) of the same B images.

    r_i = log B + log_softmax_j(cos(f1_i, f2_j) / τ)[i]: row i's positive is its own second view, the other
    B-1 images are its negatives. mean_i r_i is the InfoNCE lower bound on the mutual information between
    the two views (van den Oord et al. 2018), so r_i <= log B: a batch of B can certify at most log B nats,
    reached when every image is told apart from the rest; r_i ≈ 0 when the views carry nothing of x₀.
    """
    z1, z2 = F.normalize(f1.float(), dim=1), F.normalize(f2.float(), dim=1)  # (B, D)
    logits = z1 @ z2.T / temperature  # (B, B)
    return math.log(len(f1)) + logits.log_softmax(dim=1).diagonal()  # (B,)


def timestep_entropy(p: Tensor, bin_size: Tensor) -> Tensor:
    """Entropy (...,) in nats over timesteps of bin probabilities p (..., K) spread uniformly within bins.

    H_t = H_bins(p) + Σ_k p_k log |bin_k|: the within-bin spread adds log |bin| nats. exp(H_t) is the
    effective number of timesteps, T for uniform, m·|bin| for uniform over m equal bins.
    """
    plogp = p * p.clamp_min(torch.finfo(p.dtype).tiny).log()  # (..., K); 0 log 0 = 0 with a finite gradient
    return -plogp.sum(dim=-1) + (p * bin_size.to(p).log()).sum(dim=-1)
