"""`mnist:PATH`: a folder of IDX files as MNIST / Fashion-MNIST / KMNIST ship them, plain or gzipped.

IDX: two zero bytes, a type byte, the number of dimensions, each dimension as a big-endian uint32, then the
values big-endian. The folder holds train-images-idx3-ubyte and train-labels-idx1-ubyte (optionally .gz, or
"train-images.idx3-ubyte" spelt with a dot); t10k-* files, when present, are the test split.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from aselect_core.datasets.base import DatasetError, RawData, check_labels

IDX_TYPES: dict[int, str] = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
OPENERS = {".gz": gzip.open}  # by suffix; anything else is read as it is


def read_idx(file: Path) -> np.ndarray:
    """The array stored in an IDX file, in native byte order."""
    try:
        with OPENERS.get(file.suffix, open)(file, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as error:
        raise DatasetError(f"{file}: expected a readable IDX file, got {type(error).__name__}") from error
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in IDX_TYPES:
        raise DatasetError(f"{file}: expected IDX magic 00 00 <type> <ndim>, got {data[:4].hex(' ')}")
    ndim, header = data[3], 4 + 4 * data[3]
    if len(data) < header:
        raise DatasetError(f"{file}: expected {ndim} dimension sizes after the magic, got a truncated header")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_TYPES[data[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise DatasetError(f"{file}: expected {expected} data bytes after the header for shape {shape}, "
                           f"got {len(data) - header}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def find_idx(path: Path, prefix: str, kind: str) -> Path | None:
    """PATH/{prefix}-{kind}-ubyte[.gz], also with a dot before idxN as some mirrors spell it; None if absent."""
    stem, idx = kind.split("-")
    names = [f"{prefix}-{stem}{sep}{idx}-ubyte{ext}" for sep in "-." for ext in ("", ".gz")]
    return next((path / n for n in names if (path / n).is_file()), None)


def read_part(path: Path, prefix: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Images (N, H, W, 1) uint8 and labels (N,) of one part (train / t10k); None when neither file exists."""
    files = {kind: find_idx(path, prefix, kind) for kind in ("images-idx3", "labels-idx1")}
    if not any(files.values()):
        return None
    if not all(files.values()):
        raise DatasetError(f"{path}: expected both {prefix}-images-idx3-ubyte and {prefix}-labels-idx1-ubyte "
                           f"(optionally .gz), found only {', '.join(f.name for f in files.values() if f)}")
    images, labels = read_idx(files["images-idx3"]), read_idx(files["labels-idx1"])
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DatasetError(f"{files['images-idx3']}: expected uint8 images N×H×W, got {images.dtype} "
                           f"of shape {images.shape}")
    return images[..., None], check_labels(labels, len(images), str(files["labels-idx1"]))


def load_mnist(path: Path) -> RawData:
    """The train part, and the t10k part as the test split when present (else load_dataset splits train)."""
    train = read_part(path, "train") if path.is_dir() else None
    if train is None:
        raise DatasetError(f"{path}: expected a folder with train-images-idx3-ubyte and train-labels-idx1-ubyte "
                           f"(optionally .gz)")
    parts = [train, *filter(None, [read_part(path, "t10k")])]
    if parts[-1][0].shape[1:] != train[0].shape[1:]:
        raise DatasetError(f"{path}: expected t10k images of the train images' size {train[0].shape[1:3]}, "
                           f"got {parts[-1][0].shape[1:3]}")
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    is_test = np.arange(len(labels)) >= len(train[1]) if len(parts) == 2 else None
    return RawData(images, labels, [str(c) for c in range(int(labels.max(initial=-1)) + 1)], is_test=is_test)
