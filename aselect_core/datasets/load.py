"""Dataset specs -> ImageDataset: the registries of embedded datasets and local formats, and the splits.

A spec is an embedded name (`digits`, `mnist5k`, `lfw`, `textures`, `shapes`) or `PREFIX:PATH` with PREFIX a
local format (`folder`, `npz`, `cifar`, `mnist`). Sources that ship no split get a seeded, stratified 80/20
one, so "train" and "test" are disjoint and the same in every process. Embedded raw arrays are cached.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from aselect_core.datasets.base import DatasetError, ImageDataset, RawData, to_image_dataset
from aselect_core.datasets.cifar import load_cifar
from aselect_core.datasets.idx import load_mnist
from aselect_core.datasets.local import load_folder, load_npz
from aselect_core.datasets.shapes import make_shapes
from aselect_core.datasets.sources import load_digits, load_lfw, load_mnist5k
from aselect_core.datasets.textures import make_textures

EMBEDDED: dict[str, Callable[[], RawData]] = {
    "digits": load_digits, "mnist5k": load_mnist5k, "lfw": load_lfw, "textures": make_textures,
    "shapes": make_shapes,
}
LOCAL: dict[str, Callable[[Path], RawData]] = {
    "folder": load_folder, "npz": load_npz, "cifar": load_cifar, "mnist": load_mnist,
}
SPLITS: dict[str, Callable[[np.ndarray], np.ndarray]] = {  # is_test (N,) bool -> rows of the split (N,) bool
    "train": lambda is_test: ~is_test, "test": lambda is_test: is_test, "all": np.ones_like,
}
TEST_FRACTION = 0.2
SPLIT_SEED = 0


def list_datasets() -> list[str]:
    """The embedded dataset names (usable as specs without any file)."""
    return list(EMBEDDED)


@lru_cache(maxsize=None)
def embedded_raw(name: str) -> RawData:
    """The raw arrays of an embedded dataset, read or generated once per process (callers must not mutate)."""
    return EMBEDDED[name]()


def stratified_test_mask(labels: np.ndarray, fraction: float = TEST_FRACTION, seed: int = SPLIT_SEED) -> np.ndarray:
    """(N,) bool: a seeded random `fraction` of each class (rounded) is test, the rest train."""
    rng = np.random.default_rng(seed)
    is_test = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == c))
        is_test[rows[: round(fraction * len(rows))]] = True
    return is_test


def held_out(raw: RawData) -> np.ndarray:
    """The source's own split when it has one, else the seeded stratified split."""
    return raw.is_test if raw.is_test is not None else stratified_test_mask(raw.labels)


def read_raw(spec: str) -> RawData:
    """The RawData a spec names: an embedded dataset (cached) or a local path read by its format's loader."""
    if spec in EMBEDDED:
        return embedded_raw(spec)
    prefix, sep, location = spec.partition(":")
    if not sep:
        raise DatasetError(f"dataset {spec!r}: unknown name, expected one of {', '.join(EMBEDDED)} "
                           f"or PREFIX:PATH with PREFIX in {', '.join(LOCAL)}")
    if prefix not in LOCAL:
        raise DatasetError(f"dataset spec {spec!r}: unknown prefix {prefix!r}, expected one of {', '.join(LOCAL)}")
    path = Path(location).expanduser()
    if not path.exists():
        raise DatasetError(f"dataset spec {spec!r}: path {path} does not exist")
    return LOCAL[prefix](path)


def load_dataset(spec: str, split: str = "train", image_size: int | None = None) -> ImageDataset:
    """The `split` ("train", "test" or "all") of the dataset `spec`, resized to image_size × image_size if given."""
    if split not in SPLITS:
        raise DatasetError(f"split: expected one of {', '.join(SPLITS)}, got {split!r}")
    if image_size is not None and (not isinstance(image_size, (int, np.integer)) or image_size < 1):
        raise DatasetError(f"image_size: expected a positive integer or None, got {image_size!r}")
    raw = read_raw(spec)
    rows = np.flatnonzero(SPLITS[split](held_out(raw)))  # (M,) in source order
    return to_image_dataset(raw, rows, spec, split, image_size)


def describe_datasets() -> pd.DataFrame:
    """One row per embedded dataset: name, split sizes, native image shape and classes."""
    rows = []
    for name in EMBEDDED:
        raw = embedded_raw(name)
        is_test = held_out(raw)
        _, height, width, channels = raw.images.shape
        rows.append({"name": name, "n_train": int((~is_test).sum()), "n_test": int(is_test.sum()),
                     "channels": channels, "height": height, "width": width, "num_classes": len(raw.classes),
                     "classes": ", ".join(raw.classes)})
    return pd.DataFrame(rows)
