"""High-frequency ratio (HFR) of DiT token maps: the A-SelecT criterion for picking a timestep and layer.

A-SelecT (arXiv 2603.25758) scores a (timestep, layer) by how much of its feature energy sits at high
spatial frequencies of the patch grid: tokens are put back on their (h, w) grid, each channel gets a 2-D
FFT, and HFR = (power at radial frequency > cutoff) / (total power).

Conventions chosen here:
- Frequencies are in cycles per patch, as `torch.fft.fftfreq` gives them, so each axis' Nyquist is 0.5 and
  the radius sqrt(f_y² + f_x²) runs from 0 to 0.5·√2 (the checkerboard corner). The default cutoff 0.25 is
  half of Nyquist.
- Power is pooled over channels before the ratio (an energy-weighted ratio), so the score ignores channel
  order and any positive rescaling of the tokens.
- `remove_mean=True` subtracts each channel's spatial mean: the DC term carries the token's global offset,
  not spatial structure, and would otherwise dominate the denominator. With `remove_mean=False` the DC term
  counts as low-frequency energy.
- A map with no energy at all scores 0.
"""
from __future__ import annotations

import math
from typing import Any

import pandas as pd
import torch
from torch import Tensor


def infer_grid(num_tokens: int) -> tuple[int, int]:
    """The square (h, w) patch grid holding `num_tokens` tokens."""
    side = math.isqrt(num_tokens)
    if side * side != num_tokens:
        raise ValueError(f"grid: cannot infer a square grid from N={num_tokens} tokens; pass grid=(h, w)")
    return side, side


def radial_frequency(h: int, w: int) -> Tensor:
    """(h, w) radius of each FFT bin in cycles per patch (Nyquist 0.5 per axis), float64."""
    fy = torch.fft.fftfreq(h, dtype=torch.float64)  # (h,)
    fx = torch.fft.fftfreq(w, dtype=torch.float64)  # (w,)
    return torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)  # (h, w)


def check_cutoff(cutoff: float) -> None:
    """A radius in cycles/patch inside the spectrum: [0, Nyquist·√2); a one-line ValueError otherwise."""
    if not 0 <= cutoff < 0.5 * math.sqrt(2):
        raise ValueError(f"cutoff: expected a radius in [0, {0.5 * math.sqrt(2):.3f}) cycles/patch, got {cutoff}")


def high_frequency_ratio(tokens: Tensor, grid: tuple[int, int] | None = None, cutoff: float = 0.25,
                         remove_mean: bool = True) -> Tensor:
    """HFR per image of token features (B, N, D) with N = h·w patches in row-major order -> (B,) float64."""
    tokens = torch.as_tensor(tokens)
    if tokens.dim() != 3:
        raise ValueError(f"tokens: expected a (B, N, D) tensor, got shape {tuple(tokens.shape)}")
    B, N, D = tokens.shape
    h, w = infer_grid(N) if grid is None else grid
    if h * w != N:
        raise ValueError(f"grid: expected h*w == N={N} tokens, got grid=({h}, {w})")
    check_cutoff(cutoff)
    maps = tokens.detach().to(torch.float64).transpose(1, 2).reshape(B, D, h, w)  # (B, D, h, w)
    if remove_mean:
        maps = maps - maps.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(maps).abs().pow(2).sum(dim=1)  # (B, h, w), pooled over channels
    high = radial_frequency(h, w).to(power.device) > cutoff  # (h, w)
    total = power.sum(dim=(-2, -1))  # (B,)
    high_energy = (power * high).sum(dim=(-2, -1))  # (B,)
    return torch.where(total > 0, high_energy / total.clamp_min(torch.finfo(total.dtype).tiny), 0.0)


HFR_COLUMNS = ["timestep", "layer", "hfr_mean", "hfr_std", "hfr_se", "n_images"]


def hfr_grid(features: Any, grid: tuple[int, int] | None = None, cutoff: float = 0.25,
             remove_mean: bool = True) -> pd.DataFrame:
    """HFR of a FeatureBank extracted with tokens=True (its token maps and patch grid; the input every grid function
    takes) or of {(timestep, layer): (B, N, D)} -> DataFrame(HFR_COLUMNS), one row per key.

    hfr_std is the population standard deviation over the B images (0 for a single image); hfr_se the standard
    error of hfr_mean, std / sqrt(B - 1) (NaN for a single image).
    """
    if hasattr(features, "pooled"):  # a FeatureBank
        if features.tokens is None:
            raise ValueError("bank: HFR needs token maps; extract the bank with tokens=True")
        features, grid = features.tokens, grid or features.grid
    rows = []
    for (timestep, layer), tokens in features.items():
        scores = high_frequency_ratio(tokens, grid=grid, cutoff=cutoff, remove_mean=remove_mean)  # (B,)
        std, n = scores.std(correction=0).item(), len(scores)
        rows.append({"timestep": timestep, "layer": layer, "hfr_mean": scores.mean().item(), "hfr_std": std,
                     "hfr_se": std / math.sqrt(n - 1) if n > 1 else math.nan, "n_images": n})
    return pd.DataFrame(rows, columns=HFR_COLUMNS)
