"""`textures`: RGB patches cut from scikit-image's bundled photographs; the class is the source photograph.

Train patches come from the left 70% of each photograph's columns and test patches from the right 30%, so
no test pixel was ever seen in training. Patch positions are seeded and recorded in `factors` (source, x, y
of the top-left corner). Grayscale sources (brick, grass, gravel) are replicated to three channels.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

from aselect_core.datasets.base import RawData
from aselect_core.datasets.sources import skimage_file

SOURCES: dict[str, str] = {
    "brick": "brick.png", "grass": "grass.png", "gravel": "gravel.png", "coffee": "coffee.png",
    "chelsea": "chelsea.png", "astronaut": "astronaut.png", "rocket": "rocket.jpg",
    "hubble": "hubble_deep_field.jpg",
}
TRAIN_FRACTION = 0.7  # columns [0, boundary) feed train patches, [boundary, W) test patches


def train_boundary(width: int) -> int:
    """The first column of a photograph's test region."""
    return int(TRAIN_FRACTION * width)


def _cut(photo: np.ndarray, xs: np.ndarray, ys: np.ndarray, patch: int) -> np.ndarray:
    """Patches (n, patch, patch, 3) with top-left corners (ys, xs) from photo (H, W, 3)."""
    windows = np.lib.stride_tricks.sliding_window_view(photo, (patch, patch), axis=(0, 1))  # (H', W', 3, p, p)
    return windows[ys, xs].transpose(0, 2, 3, 1)  # (n, p, p, 3)


def make_textures(patch: int = 32, n_train: int = 240, n_test: int = 60, seed: int = 0) -> RawData:
    """n_train + n_test patches per source, train ones left of `train_boundary`, test ones right of it."""
    rng = np.random.default_rng(seed)
    images, labels, is_test, rows = [], [], [], []
    for label, (source, file) in enumerate(SOURCES.items()):
        photo = np.asarray(Image.open(skimage_file(file)).convert("RGB"))  # (H, W, 3) uint8
        height, width, _ = photo.shape
        boundary = train_boundary(width)
        xs = np.concatenate([rng.integers(0, boundary - patch + 1, n_train),
                             rng.integers(boundary, width - patch + 1, n_test)])  # (n,)
        ys = rng.integers(0, height - patch + 1, n_train + n_test)  # (n,)
        images.append(_cut(photo, xs, ys, patch))
        labels.append(np.full(n_train + n_test, label, dtype=np.int64))
        is_test.append(np.arange(n_train + n_test) >= n_train)
        rows.append(pd.DataFrame({"source": source, "x": xs, "y": ys}))
    factors = pd.concat(rows, ignore_index=True)
    return RawData(np.concatenate(images), np.concatenate(labels), list(SOURCES), factors=factors,
                   is_test=np.concatenate(is_test))
