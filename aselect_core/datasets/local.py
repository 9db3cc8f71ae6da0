"""Local image collections: `folder:PATH` (one sub-folder per class) and `npz:PATH` (numpy arrays).

Both are read without executing code (PIL decoders; `np.load(allow_pickle=False)`). Neither carries its own
split, so `load_dataset` makes a seeded stratified one.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from aselect_core.datasets.base import DatasetError, RawData, check_labels

GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}  # PIL modes without colour


def _visible(folder: Path) -> list[Path]:
    """Entries of a folder, sorted, without hidden ones (.DS_Store, .ipynb_checkpoints, ...)."""
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _open_image(file: Path) -> Image.Image:
    """A decoded PIL image, or DatasetError naming the file."""
    try:
        with Image.open(file) as picture:
            picture.load()
            return picture.copy()
    except (UnidentifiedImageError, OSError) as error:
        raise DatasetError(f"{file}: expected an image PIL can read, got {type(error).__name__}") from error


def load_folder(path: Path) -> RawData:
    """Images under PATH/<class>/...; classes are the sorted sub-folder names. RGB unless all are gray."""
    class_dirs = [p for p in _visible(path) if p.is_dir()] if path.is_dir() else []
    if not class_dirs:
        raise DatasetError(f"{path}: expected a folder with one sub-folder of images per class, found none")
    files, labels = [], []
    for label, class_dir in enumerate(class_dirs):
        found = [p for p in _visible(class_dir) if p.is_file()]
        if not found:
            raise DatasetError(f"{class_dir}: expected at least one image in this class folder, found none")
        files += found
        labels += [label] * len(found)
    pictures = [_open_image(f) for f in files]
    mode = "L" if all(p.mode in GRAY_MODES for p in pictures) else "RGB"
    for file, picture in zip(files, pictures):
        if picture.size != pictures[0].size:
            raise DatasetError(f"{file}: expected every image to be {pictures[0].size[0]}×{pictures[0].size[1]} "
                               f"like {files[0].name}, got {picture.size[0]}×{picture.size[1]}")
    images = np.stack([np.asarray(p.convert(mode)) for p in pictures])  # (N, H, W) or (N, H, W, 3) uint8
    images = images.reshape(*images.shape[:3], -1)  # (N, H, W, C)
    return RawData(images, np.asarray(labels, dtype=np.int64), [d.name for d in class_dirs])


def _array(archive: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray | None:
    """archive[key], None when absent; object (pickled) arrays are refused."""
    if key not in archive.files:
        return None
    try:
        return archive[key]
    except ValueError as error:
        raise DatasetError(f"{path}[{key}]: expected a numeric array, got an object array (pickles are refused)"
                           ) from error


def _check_images(images: np.ndarray, where: str) -> np.ndarray:
    """(N, H, W) or (N, H, W, C) uint8 or float in [0, 1] -> (N, H, W, C)."""
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise DatasetError(f"{where}: expected shape N×H×W or N×H×W×C with C in (1, 3), got {images.shape}")
    if images.dtype != np.uint8 and images.dtype.kind != "f":
        raise DatasetError(f"{where}: expected dtype uint8 (0..255) or float (0..1), got {images.dtype}")
    if images.dtype.kind == "f" and images.size and not (np.isfinite(images).all()
                                                         and images.min() >= 0.0 and images.max() <= 1.0):
        raise DatasetError(f"{where}: expected float values in [0, 1], got range "
                           f"[{np.nanmin(images):g}, {np.nanmax(images):g}]")
    return images


def _check_masks(masks: np.ndarray, images: np.ndarray, where: str) -> np.ndarray:
    """Integer masks (N, H, W) matching the images, as int64."""
    if masks.shape != images.shape[:3] or masks.dtype.kind not in "iu":
        raise DatasetError(f"{where}: expected integer masks of shape {images.shape[:3]}, got {masks.dtype} "
                           f"of shape {masks.shape}")
    return masks.astype(np.int64)


def _encode_labels(labels: np.ndarray, classes: np.ndarray | None, where: str) -> tuple[np.ndarray, list[str]]:
    """Labels indexing `classes`; without class names, the sorted distinct label values become the classes."""
    if classes is None:
        values, encoded = np.unique(labels, return_inverse=True)
        return encoded.astype(np.int64), [str(v) for v in values]
    if classes.ndim != 1 or classes.dtype.kind != "U" or (len(labels) and labels.max() >= len(classes)):
        raise DatasetError(f"{where}: expected a 1-D string array with a name for every label, got "
                           f"{classes.dtype} of shape {classes.shape}")
    return labels, [str(c) for c in classes]


def load_npz(path: Path) -> RawData:
    """Arrays `images` (N×H×W[×C], uint8 or float in [0, 1]), `labels` (N,), optional `masks` and `classes`."""
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise DatasetError(f"{path}: expected a .npz archive readable without pickle, got "
                           f"{type(error).__name__}") from error
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DatasetError(f"{path}: expected a .npz archive of named arrays, got a single .npy array")
    with archive:
        images, labels = _array(archive, "images", path), _array(archive, "labels", path)
        for key, value in (("images", images), ("labels", labels)):
            if value is None:
                raise DatasetError(f"{path}: missing array '{key}' (has {', '.join(archive.files) or 'none'})")
        images = _check_images(images, f"{path}[images]")
        labels = check_labels(labels, len(images), f"{path}[labels]")
        masks = _array(archive, "masks", path)
        masks = None if masks is None else _check_masks(masks, images, f"{path}[masks]")
        labels, classes = _encode_labels(labels, _array(archive, "classes", path), f"{path}[classes]")
    return RawData(images, labels, classes, masks)
