"""Image datasets as `ImageDataset` (float32 N×C×H×W in [-1, 1], int64 labels, optional masks and factors).

`load_dataset(spec, split, image_size)` reads an embedded dataset (`list_datasets()`: digits, mnist5k, lfw,
textures, shapes — all from installed packages or generated, nothing downloaded) or a local one
(`folder:PATH`, `npz:PATH`, `cifar:PATH`, `mnist:PATH`). Bad input raises `DatasetError` with one line.
"""
from aselect_core.datasets.base import DatasetError, ImageDataset
from aselect_core.datasets.load import describe_datasets, list_datasets, load_dataset

__all__ = ["DatasetError", "ImageDataset", "describe_datasets", "list_datasets", "load_dataset"]
