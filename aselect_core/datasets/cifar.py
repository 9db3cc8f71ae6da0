"""`cifar:PATH`: the CIFAR-10 / CIFAR-100 "python version" folders, read without executing pickled code.

The batches are pickles of dicts holding a uint8 `data` array (N, 3072: R, G then B planes of 32×32) and a
label list. `SafeUnpickler` resolves only the few globals numpy needs to rebuild an array (and `_codecs.encode`,
which Python 3 uses for bytes in protocol-2 pickles); any other global — `os.system`, `builtins.eval`, ... — is
refused before it can be called.
"""
from __future__ import annotations

import codecs
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aselect_core.datasets.base import DatasetError, RawData, check_labels

# numpy's own array rebuilders, taken from its pickling so that no private module is imported by name
_RECONSTRUCT = np.empty(0).__reduce__()[0]  # numpy(._)core.multiarray._reconstruct
_FROMBUFFER = np.empty(0).__reduce_ex__(5)[0]  # numpy(._)core.numeric._frombuffer (pickle protocol 5)
SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    ("_codecs", "encode"): codecs.encode,
}


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that builds plain containers and numpy arrays and refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in SAFE_GLOBALS:
            raise pickle.UnpicklingError(f"refused global {module}.{name} (only numpy arrays may be rebuilt)")
        return SAFE_GLOBALS[(module, name)]


def read_pickle(file: Path) -> dict:
    """A pickled dict, read with SafeUnpickler (latin1 for Python 2 strings, as torchvision does)."""
    try:
        with open(file, "rb") as handle:
            value = SafeUnpickler(handle, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError) as error:
        raise DatasetError(f"{file}: expected a CIFAR python batch, {error}".replace("\n", " ")) from error
    if not isinstance(value, dict):
        raise DatasetError(f"{file}: expected a pickled dict, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class Layout:
    """Where a CIFAR variant keeps its batches, labels and class names."""

    train: str  # glob of the training batches
    test: str  # the test batch
    meta: str  # the file holding the class names
    labels: str  # key of the labels in a batch
    names: str  # key of the class names in the meta file


LAYOUTS: dict[str, Layout] = {
    "cifar-10": Layout("data_batch_*", "test_batch", "batches.meta", "labels", "label_names"),
    "cifar-100": Layout("train", "test", "meta", "fine_labels", "fine_label_names"),
}


def read_batch(file: Path, layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 32, 32, 3) uint8 and labels (N,) int64 from one batch file."""
    batch = read_pickle(file)
    if "data" not in batch or layout.labels not in batch:
        raise DatasetError(f"{file}: expected keys 'data' and '{layout.labels}', got {sorted(map(str, batch))}")
    data = np.asarray(batch["data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DatasetError(f"{file}[data]: expected uint8 of shape (N, 3072), got {data.dtype} of shape {data.shape}")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # (N, 32, 32, 3)
    return images, check_labels(np.asarray(batch[layout.labels]), len(images), f"{file}[{layout.labels}]")


def class_names(meta: Path, key: str, num_classes: int) -> list[str]:
    """The class names in the meta file, or "0", "1", ... when the folder has none."""
    if not meta.is_file():
        return [str(c) for c in range(num_classes)]
    names = [str(n) for n in read_pickle(meta).get(key, [])]
    if len(names) < num_classes:
        raise DatasetError(f"{meta}[{key}]: expected at least {num_classes} class names, got {len(names)}")
    return names


def load_cifar(path: Path) -> RawData:
    """All batches of a CIFAR-10 (data_batch_*, test_batch) or CIFAR-100 (train, test) folder, with its split."""
    layout = next((lay for lay in LAYOUTS.values() if (path / lay.test).is_file()), None)
    train_files = sorted(path.glob(layout.train)) if layout else []
    if not train_files:
        raise DatasetError(f"{path}: expected a CIFAR python folder with data_batch_* and test_batch "
                           f"(CIFAR-10) or train and test (CIFAR-100)")
    parts = [read_batch(f, layout) for f in [*train_files, path / layout.test]]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    is_test = np.arange(len(labels)) >= len(labels) - len(parts[-1][1])  # the test batch comes last
    names = class_names(path / layout.meta, layout.names, int(labels.max(initial=-1)) + 1)
    return RawData(images, labels, names, is_test=is_test)
