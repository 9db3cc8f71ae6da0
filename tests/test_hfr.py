"""High-frequency ratio on synthetic token maps whose spectra are known in closed form."""
from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from analysis.hfr import hfr_grid, high_frequency_ratio


def to_tokens(maps: torch.Tensor) -> torch.Tensor:
    """(B, D, h, w) channel maps -> (B, N, D) tokens in row-major patch order."""
    return maps.flatten(2).transpose(1, 2)


def coords(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(h, w) row and column indices, float64."""
    return torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")


def checkerboard(h: int, w: int) -> torch.Tensor:
    """(h, w) alternating ±1: all energy at (0.5, 0.5) cycles/patch."""
    r, c = coords(h, w)
    return (-1.0) ** (r + c)


def low_cosine(h: int, w: int) -> torch.Tensor:
    """(h, w) one cycle across the width: all energy at radius 1/w < 0.25."""
    _, c = coords(h, w)
    return torch.cos(2 * math.pi * c / w)


def stack(pattern: torch.Tensor, B: int = 2, D: int = 3) -> torch.Tensor:
    """Repeat an (h, w) pattern with per-channel offsets and gains into (B, D, h, w)."""
    gains = torch.arange(1, D + 1, dtype=torch.float64)[None, :, None, None]
    offsets = torch.arange(D, dtype=torch.float64)[None, :, None, None] * 5
    return pattern.expand(B, D, *pattern.shape) * gains + offsets


@pytest.mark.parametrize("remove_mean", [True, False])
def test_constant_map_scores_zero(remove_mean):
    tokens = torch.full((2, 16, 4), 3.0)
    assert torch.equal(high_frequency_ratio(tokens, remove_mean=remove_mean), torch.zeros(2, dtype=torch.float64))


def test_zero_energy_scores_zero():
    assert torch.equal(high_frequency_ratio(torch.zeros(1, 16, 2)), torch.zeros(1, dtype=torch.float64))


def test_checkerboard_scores_one_and_low_cosine_zero():
    cb = high_frequency_ratio(to_tokens(stack(checkerboard(8, 8))))
    low = high_frequency_ratio(to_tokens(stack(low_cosine(8, 8))))
    torch.testing.assert_close(cb, torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(low, torch.zeros(2, dtype=torch.float64), atol=1e-12, rtol=0)


def test_dc_counts_as_low_energy_without_mean_removal():
    # checkerboard + 1: energy h·w at (0.5, 0.5) and h·w at DC, so HFR = 1/2 with the DC kept.
    tokens = to_tokens((checkerboard(8, 8) + 1.0)[None, None])
    torch.testing.assert_close(high_frequency_ratio(tokens, remove_mean=False), torch.tensor([0.5], dtype=torch.float64))
    torch.testing.assert_close(high_frequency_ratio(tokens), torch.tensor([1.0], dtype=torch.float64))


def test_cutoff_zero_counts_every_non_dc_bin():
    tokens = torch.randn(3, 64, 5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(high_frequency_ratio(tokens, cutoff=0.0), torch.ones(3, dtype=torch.float64))


def test_monotone_in_added_high_frequency_amplitude_with_closed_form():
    # cosine energy h·w/2, checkerboard a²·h·w, orthogonal: HFR = a² / (1/2 + a²).
    amps = torch.tensor([0.0, 0.1, 0.3, 0.7, 1.5, 4.0], dtype=torch.float64)
    maps = low_cosine(8, 8) + amps[:, None, None] * checkerboard(8, 8)  # (6, 8, 8)
    scores = high_frequency_ratio(to_tokens(maps[:, None]))
    torch.testing.assert_close(scores, amps**2 / (0.5 + amps**2))
    assert torch.all(scores.diff() > 0)


def test_row_major_non_square_grid():
    # token n sits at (n // w, n % w): a cosine along the width is low-frequency only with that order.
    h, w = 4, 8
    tokens = to_tokens(low_cosine(h, w)[None, None])
    torch.testing.assert_close(high_frequency_ratio(tokens, grid=(h, w)), torch.zeros(1, dtype=torch.float64),
                               atol=1e-12, rtol=0)
    assert high_frequency_ratio(tokens, grid=(w, h)).item() > 0.5


def test_invariant_to_channel_permutation_and_positive_scaling():
    tokens = torch.randn(4, 36, 6, generator=torch.Generator().manual_seed(1))
    base = high_frequency_ratio(tokens)
    torch.testing.assert_close(high_frequency_ratio(tokens[:, :, torch.randperm(6)]), base)
    torch.testing.assert_close(high_frequency_ratio(7.5 * tokens), base)


@pytest.mark.parametrize("tokens, grid, match", [
    (torch.zeros(16, 4), None, "tokens: expected a \\(B, N, D\\)"),
    (torch.zeros(1, 15, 4), None, "grid: cannot infer a square grid from N=15"),
    (torch.zeros(1, 16, 4), (3, 5), "grid: expected h\\*w == N=16"),
])
def test_bad_shapes(tokens, grid, match):
    with pytest.raises(ValueError, match=match):
        high_frequency_ratio(tokens, grid=grid)


def test_bad_cutoff():
    with pytest.raises(ValueError, match="cutoff: expected a radius"):
        high_frequency_ratio(torch.zeros(1, 16, 4), cutoff=0.8)


def test_hfr_grid_rows_match_per_key_scores():
    cb, low = to_tokens(stack(checkerboard(4, 4))), to_tokens(stack(low_cosine(4, 4)))
    mixed = torch.cat([cb[:1], low[:1]])  # one image at HFR 1, one at 0
    df = hfr_grid({(0, "block.1"): cb, (500, "block.2"): mixed})
    assert list(df.columns) == ["timestep", "layer", "hfr_mean", "hfr_std", "hfr_se", "n_images"]
    assert df[["timestep", "layer"]].values.tolist() == [[0, "block.1"], [500, "block.2"]]
    assert df.hfr_mean.tolist() == pytest.approx([1.0, 0.5])
    assert df.hfr_std.tolist() == pytest.approx([0.0, 0.5])
    assert df.hfr_se[1] == pytest.approx(0.5) and df.n_images.tolist() == [len(cb), 2]  # s / sqrt(n) of [1, 0]


def test_hfr_grid_takes_a_feature_bank_like_every_grid_function():
    from analysis.features import FeatureBank

    tokens = {(0, "block.0"): torch.randn(5, 16, 8), (500, "block.0"): torch.randn(5, 16, 8)}
    bank = FeatureBank(pooled={k: v.mean(1) for k, v in tokens.items()}, labels=torch.zeros(5, dtype=torch.long),
                       is_test=torch.zeros(5, dtype=torch.bool), image_rows=torch.arange(5), grid=(4, 4),
                       timesteps=[0, 500], layers=["block.0"], image_passes=10, wall_seconds=0.0, tokens=tokens)
    pd.testing.assert_frame_equal(hfr_grid(bank), hfr_grid(tokens, (4, 4)))
    with pytest.raises(ValueError, match="bank: HFR needs token maps; extract the bank with tokens=True"):
        hfr_grid(FeatureBank(**{**bank.__dict__, "tokens": None}))
