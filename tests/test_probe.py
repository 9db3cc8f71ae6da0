"""Probes: separable data is learned, random labels stay at chance, C is chosen without the test split, pixel
baseline and per-patch segmentation on planted signal, one-line errors."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from analysis import probe
from analysis.probe import (GRID_COLUMNS, knn_accuracy, linear_probe, mean_iou, patch_labels, pixel_baseline,
                            probe_grid, segmentation_probe, wilson_interval)


def blobs(n: int, d: int = 16, classes: int = 4, sep: float = 4.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs: class c has mean sep·e_c in the first `classes` coordinates."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.normal(size=(n, d))
    x[np.arange(n), y] += sep
    return x.astype(np.float32), y


def test_separable_data_is_learned_and_random_labels_stay_at_chance():
    x, y = blobs(400)
    xt, yt = blobs(200, seed=1)
    res = linear_probe(x, y, xt, yt)
    assert res.accuracy >= 0.97 and res.cross_entropy < 0.2
    assert (res.test_pred == yt).mean() == pytest.approx(res.accuracy)
    assert knn_accuracy(x, y, xt, yt) >= 0.95

    rng = np.random.default_rng(2)
    shuffled = linear_probe(x, rng.integers(0, 4, 400), xt, rng.integers(0, 4, 200))
    assert 0.12 <= shuffled.accuracy <= 0.40  # chance is 0.25
    assert shuffled.cross_entropy > np.log(4) - 0.1


def test_c_is_chosen_on_validation_never_on_test_labels():
    x, y = blobs(300, sep=1.0)
    xt, yt = blobs(150, seed=1, sep=1.0)
    a = linear_probe(x, y, xt, yt, Cs=(0.001, 0.1, 10.0))
    b = linear_probe(x, y, xt, np.random.default_rng(0).permutation(yt), Cs=(0.001, 0.1, 10.0))
    assert a.C == b.C and a.val_accuracy == b.val_accuracy  # test labels cannot move the choice
    assert a.val_accuracy[a.C] == max(a.val_accuracy.values())
    assert set(a.val_accuracy) == {0.001, 0.1, 10.0}


class Bank:
    """The slice of FeatureBank that probe_grid reads, on planted data."""

    def __init__(self):
        x, y = blobs(300, d=8)
        self.labels = torch.as_tensor(y)
        self.is_test = torch.arange(300) >= 200
        noise = torch.randn(300, 4, 8, generator=torch.Generator().manual_seed(0))
        self.tokens = {(0, "block.1"): torch.as_tensor(x)[:, None, :] + 0.1 * noise,  # signal in every token
                       (0, "block.1.attn"): noise}  # no signal
        self.pooled = {k: v.mean(dim=1) for k, v in self.tokens.items()}
        self.n_test = 100

    def split_mask(self, split):
        return self.is_test if split == "test" else ~self.is_test

    def keys(self):
        return list(self.pooled)


@pytest.mark.parametrize("pooling", ["mean", "flatten"])
def test_probe_grid_rows(pooling):
    df = probe_grid(Bank(), pooling=pooling)
    assert list(df.columns) == GRID_COLUMNS and len(df) == 2
    sig, noise = df.iloc[0], df.iloc[1]
    assert (sig.layer, sig.kind, sig.depth, noise.kind) == ("block.1", "block", 1, "attn")
    assert sig.accuracy > 0.9 and noise.accuracy < 0.5 and sig.knn_accuracy > 0.9
    assert (df.n_train == 200).all() and (df.n_test == 100).all() and (df.pooling == pooling).all()
    assert ((df.accuracy_ci_low <= df.accuracy) & (df.accuracy <= df.accuracy_ci_high)).all()
    assert (df.accuracy_ci_high - df.accuracy_ci_low).between(0.0, 0.25).all()  # 100 test images: at most ±10 pts


def test_wilson_interval_closed_form():
    # 8 of 10: the textbook Wilson 95% interval (0.4902, 0.9433); 0 of 10 keeps a non-zero upper end
    assert np.allclose(wilson_interval(0.8, 10), (0.490162, 0.943318), atol=1e-6)
    assert wilson_interval(0.0, 10)[0] == 0.0 and np.isclose(wilson_interval(0.0, 10)[1], 0.277533, atol=1e-6)
    low, high = wilson_interval(0.7, 500)  # ~±4 points at 500 images, as bench/README says
    assert 0.035 < 0.7 - low < 0.045 and 0.035 < high - 0.7 < 0.045
    assert all(np.isnan(wilson_interval(0.5, 0)))


def test_pixel_baseline_uses_the_splits_and_noise():
    from analysis.features import probe_splits
    from aselect_core.datasets import load_dataset
    from aselect_core.diffusion import NoiseSchedule

    splits = probe_splits(load_dataset("digits", "train", 8), 300, seed=0, n_test=150)
    df = pixel_baseline(splits, timesteps=(0, 999), schedule=NoiseSchedule())
    assert list(df.columns) == GRID_COLUMNS and (df.layer == "pixels").all() and (df.pooling == "flatten").all()
    assert df.accuracy.iloc[0] > 0.8  # digits are easy from pixels
    assert df.accuracy.iloc[1] < 0.35  # at t = 999 the image is almost pure noise
    assert (df.n_train == 300).all() and (df.n_test == 150).all()


def test_segmentation_probe_recovers_planted_patch_classes():
    g = torch.Generator().manual_seed(0)
    n, h, w, p, D = 60, 4, 4, 2, 8
    patch_cls = torch.randint(0, 3, (n, h, w), generator=g)  # (n, h, w)
    masks = patch_cls.repeat_interleave(p, 1).repeat_interleave(p, 2)  # (n, 8, 8)
    tokens = torch.randn(n, h * w, D, generator=g)
    tokens[..., :3] += 3.0 * torch.nn.functional.one_hot(patch_cls.flatten(1), 3)  # class signal per token
    assert torch.equal(patch_labels(masks, (h, w)), patch_cls.flatten(1))
    res = segmentation_probe(tokens[:40], masks[:40], tokens[40:], masks[40:], grid=(h, w))
    assert res["miou"] > 0.85 and res["patch_accuracy"] > 0.9
    shuffled = segmentation_probe(torch.randn(n, h * w, D, generator=g)[:40], masks[:40], tokens[40:],
                                  masks[40:], grid=(h, w))
    assert shuffled["miou"] < 0.5


def test_patch_labels_majority_and_mean_iou():
    m = torch.tensor([[[0, 1, 2, 2], [1, 1, 2, 0], [0, 0, 0, 0], [0, 0, 3, 3]]])  # (1, 4, 4)
    assert patch_labels(m, (2, 2)).tolist() == [[1, 2, 0, 0]]
    assert mean_iou(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 1, 1])) == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_one_line_errors():
    x, y = blobs(50)
    with pytest.raises(ValueError, match=r"^train_y: expected at least 2 classes"):
        linear_probe(x, np.zeros(50, dtype=int), x, y)
    with pytest.raises(ValueError, match=r"^pooling: expected one of"):
        probe_grid(Bank(), pooling="max")
    with pytest.raises(ValueError, match=r"^grid: expected a patch grid"):
        patch_labels(torch.zeros(1, 8, 8, dtype=torch.long), (3, 3))


def test_grid_pooling_keeps_region_means_in_layout():
    tokens = torch.arange(2 * 16 * 3, dtype=torch.float32).reshape(2, 16, 3)  # (n, N = 4×4, D)
    pooled = probe.POOLINGS["grid2"](tokens)  # (n, 4·D): channel-major, then the 2×2 regions row by row
    grid = tokens.reshape(2, 4, 4, 3)
    top_left = grid[:, :2, :2].mean(dim=(1, 2))  # (n, D)
    bottom_right = grid[:, 2:, 2:].mean(dim=(1, 2))
    assert pooled.shape == (2, 12)
    torch.testing.assert_close(pooled.reshape(2, 3, 4)[:, :, 0], top_left)
    torch.testing.assert_close(pooled.reshape(2, 3, 4)[:, :, 3], bottom_right)
    torch.testing.assert_close(probe.POOLINGS["grid4"](tokens), tokens.permute(0, 2, 1).flatten(1))  # 1 token each
    with pytest.raises(ValueError, match="grid pooling to 2×2 needs a square patch grid divisible by 2, got 9"):
        probe.POOLINGS["grid2"](torch.zeros(1, 9, 3))
