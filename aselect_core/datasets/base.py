"""The dataset types: `RawData` (what a loader reads, numpy) and `ImageDataset` (what the rest of the code sees).

Loaders return `RawData` with images (N, H, W, C) as uint8 or float in [0, 1]; `to_image_dataset` picks a
split's rows, scales them to float32 (N, C, H, W) in [-1, 1] and optionally resizes, so every source ends up
in the one tensor contract of docs/architecture.md.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor


class DatasetError(ValueError):
    """Bad dataset input; the message is one line naming the file or field and what was expected."""


@dataclass(frozen=True)
class RawData:
    """A source as read from disk or generated: numpy arrays, not yet split, scaled or resized."""

    images: np.ndarray  # (N, H, W, C) uint8, or float in [0, 1]
    labels: np.ndarray  # (N,) int64 in [0, len(classes))
    classes: list[str]
    masks: np.ndarray | None = None  # (N, H, W) int64, 0 = background
    factors: pd.DataFrame | None = None  # (N rows) per-image generating factors
    is_test: np.ndarray | None = None  # (N,) bool: the source's own test split; None -> a seeded split is made


@dataclass
class ImageDataset:
    """Images in [-1, 1] with integer labels (and, for some sources, segmentation masks and factors)."""

    images: Tensor  # (N, C, H, W) float32 in [-1, 1]
    labels: Tensor  # (N,) int64
    masks: Tensor | None  # (N, H, W) int64 or None
    classes: list[str]
    name: str
    split: str = "all"
    factors: pd.DataFrame | None = None  # (N rows) generating factors, aligned with images

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def image_size(self) -> int:
        """The side of the (square) images; the height when they are not square."""
        return self.images.shape[2]

    def subset(self, indices: Tensor | np.ndarray | list[int]) -> ImageDataset:
        """The rows `indices` (in that order, or where a boolean mask is True), as a new dataset of the same
        name, split and classes."""
        rows = np.asarray(indices)
        idx = torch.as_tensor(np.flatnonzero(rows) if rows.dtype == bool else rows, dtype=torch.long)  # (M,)
        factors = None if self.factors is None else self.factors.iloc[idx.numpy()].reset_index(drop=True)
        masks = None if self.masks is None else self.masks[idx]
        return ImageDataset(self.images[idx], self.labels[idx], masks, list(self.classes), self.name,
                            self.split, factors)


def _signed_unit(images: np.ndarray) -> Tensor:
    """uint8 [0, 255] or float [0, 1] (N, H, W, C), a fresh array -> float32 (N, C, H, W) in [-1, 1], one copy."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2)  # (N, C, H, W) view
    x = x.to(torch.float32, memory_format=torch.contiguous_format)
    if images.dtype == np.uint8:
        x.div_(255.0)
    return x.mul_(2.0).sub_(1.0)


def resize(images: Tensor, masks: Tensor | None, size: int) -> tuple[Tensor, Tensor | None]:
    """Images (N, C, H, W) -> (N, C, size, size), antialiased bilinear; masks (N, H, W) by nearest pixel."""
    images = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    if masks is not None:
        masks = F.interpolate(masks[:, None].float(), size=(size, size), mode="nearest-exact")[:, 0].long()
    return images.clamp(-1.0, 1.0), masks


def to_image_dataset(raw: RawData, indices: np.ndarray, name: str, split: str,
                     image_size: int | None = None) -> ImageDataset:
    """The rows `indices` of `raw` as an ImageDataset in [-1, 1], resized to image_size × image_size if given."""
    images = _signed_unit(raw.images[indices])  # (M, C, H, W); fancy indexing copied, so the cache is safe
    masks = None if raw.masks is None else torch.from_numpy(raw.masks[indices]).long()  # (M, H, W)
    if image_size is not None and (image_size, image_size) != tuple(images.shape[2:]):
        images, masks = resize(images, masks, image_size)
    factors = None if raw.factors is None else raw.factors.iloc[indices].reset_index(drop=True)
    labels = torch.from_numpy(raw.labels[indices]).long()  # (M,)
    return ImageDataset(images, labels, masks, list(raw.classes), name, split, factors)


def check_labels(labels: np.ndarray, n_images: int, where: str) -> np.ndarray:
    """Labels as int64 (N,), after checking they are non-negative integers, one per image."""
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DatasetError(f"{where}: expected a 1-D integer array of labels, got {labels.dtype} of shape "
                           f"{labels.shape}")
    if len(labels) != n_images:
        raise DatasetError(f"{where}: expected {n_images} labels (one per image), got {len(labels)}")
    if len(labels) and labels.min() < 0:
        raise DatasetError(f"{where}: expected labels >= 0, got {labels.min()}")
    return labels.astype(np.int64)
