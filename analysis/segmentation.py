"""Segmentation over timestep × layer: `analysis.probe.segmentation_probe` on every cell, scored on exact masks.

For each timestep t (one feature extraction per t, tokens of the requested blocks only) and block, a linear probe
maps each token to its patch's majority mask class (`segmentation_probe`, C chosen on validation patches). Its
patch predictions, repeated over each patch's pixels, are scored against the test images' exact masks:
- mIoU: per class |pred ∩ mask| / |pred ∪ mask| over all test pixels, averaged over classes present in either;
- pixel accuracy: the share of test pixels whose class is right;
- 95% CIs: percentile bootstrap over test images (`n_boot` resamples, seeded), from per-image confusion matrices.
The raw-pixel baseline (layer "pixels") is the same probe on each patch's pixels of x_t: the same images, splits
and per-image noise as the features (`ProbeSplits.noisy`).

Artefacts in RUN/analysis/ (written by `analyze_segmentation`, which `analyze_run` calls for datasets with masks):
- segmentation.parquet      one row per (timestep, layer) cell, SEGMENTATION_COLUMNS; pixel rows have layer "pixels"
- segmentation_masks.npz    predicted masks of the first `n_show` test images at every cell: pred (n_cells,
                            n_show, H, W) uint8, timesteps (n_cells,), layers (n_cells,), masks (n_show, H, W)
                            uint8, images (n_show, C, H, W) float16 in [-1, 1]
- summary.json["segmentation"]  the best cell (by mIoU) with its CIs, the pixel baseline and the patch grid's
                            ceiling: the mIoU of each test patch's true majority class (`segmentation_summary`)
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
from torch import Tensor

from analysis.features import ProbeSplits, Source, extract_features, probe_splits, resolve_source
from analysis.grids import Measure, Table
from analysis.probe import patch_labels, segmentation_probe
from analysis.selection import default_timesteps
from aselect_core.datasets import ImageDataset
from aselect_core.diffusion import as_time
from aselect_core.io import atomic_write_bytes, atomic_write_json, atomic_write_parquet
from aselect_core.model.layer_key import LayerKey
from aselect_core.train.rundir import RunDir

PIXELS = "pixels"
SEGMENTATION_IMAGES = 500  # default train images (n_test: half); tokens cost n·N·D·4 bytes per layer and timestep
N_BOOT, N_SHOW = 1000, 4
SEGMENTATION_COLUMNS = ["timestep", "layer", "kind", "depth", "miou", "miou_ci_low", "miou_ci_high",
                        "pixel_accuracy", "pixel_accuracy_ci_low", "pixel_accuracy_ci_high", "patch_accuracy",
                        "n_train", "n_test", "C"]
SEGMENTATION = Table("segmentation", {  # the grid's measures, beside the registered grids' (`analysis.grids`)
    "miou": Measure("segmentation mIoU", ("miou_ci_low", "miou_ci_high")),
    "pixel_accuracy": Measure("segmentation pixel accuracy", ("pixel_accuracy_ci_low", "pixel_accuracy_ci_high"))})
MASK_COLOURS = np.array([(0.6, 0.6, 0.6), (0.902, 0.624, 0.0), (0.337, 0.706, 0.914), (0.0, 0.620, 0.451),
                         (0.941, 0.894, 0.259), (0.0, 0.447, 0.698), (0.835, 0.369, 0.0),
                         (0.800, 0.475, 0.655), (0.0, 0.0, 0.0)])  # class k -> RGB: gray background, Okabe–Ito


# -- scoring ----------------------------------------------------------------------------------------------------
def patchify(images: Tensor, grid: tuple[int, int]) -> Tensor:
    """Images (n, C, H, W) -> (n, h·w, C·p·q) pixels of each patch, patches row-major like the DiT's tokens."""
    n, C, H, W = images.shape
    h, w = grid
    x = images.reshape(n, C, h, H // h, w, W // w)  # (n, C, h, p, w, q)
    return x.permute(0, 2, 4, 1, 3, 5).reshape(n, h * w, -1)


def upsample(patch_pred: np.ndarray, grid: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """Patch classes (n, h·w) -> (n, H, W), each patch's class on all of its pixels."""
    h, w = grid
    H, W = size
    return patch_pred.reshape(-1, h, w).repeat(H // h, axis=1).repeat(W // w, axis=2)


def confusion(pred: np.ndarray, target: np.ndarray, classes: int) -> np.ndarray:
    """Per-image confusion matrices (n, classes, classes), [i, true, predicted] pixel counts, of (n, H, W) maps."""
    n = len(pred)
    flat = (np.arange(n)[:, None] * classes + target.reshape(n, -1)) * classes + pred.reshape(n, -1)  # (n, H·W)
    return np.bincount(flat.ravel(), minlength=n * classes * classes).reshape(n, classes, classes)


def scores(conf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """mIoU and pixel accuracy of summed confusion matrices (..., K, K): IoU averaged over classes present in the
    target or the prediction (as `analysis.probe.mean_iou`)."""
    inter = np.diagonal(conf, axis1=-2, axis2=-1)  # (..., K)
    union = conf.sum(axis=-1) + conf.sum(axis=-2) - inter  # (..., K)
    present = union > 0
    iou = np.where(present, inter / np.maximum(union, 1), 0.0)
    return iou.sum(axis=-1) / present.sum(axis=-1), inter.sum(axis=-1) / conf.sum(axis=(-2, -1))


def bootstrap_scores(conf: np.ndarray, n_boot: int = N_BOOT, seed: int = 0) -> dict[str, float]:
    """Point mIoU / pixel accuracy of per-image confusions (n, K, K) and their 95% percentile-bootstrap CIs over
    images (`n_boot` resamples with replacement, seeded)."""
    n = len(conf)
    counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=n_boot)  # (B, n) image weights
    boot = np.einsum("bn,nkl->bkl", counts, conf)  # (B, K, K)
    (miou, acc), (b_miou, b_acc) = scores(conf.sum(axis=0)), scores(boot)
    lo, hi = np.percentile(np.stack([b_miou, b_acc]), [2.5, 97.5], axis=1)  # (2,) each: mIoU, accuracy
    return {"miou": float(miou), "miou_ci_low": float(lo[0]), "miou_ci_high": float(hi[0]),
            "pixel_accuracy": float(acc), "pixel_accuracy_ci_low": float(lo[1]),
            "pixel_accuracy_ci_high": float(hi[1])}


def segmentation_cell(timestep: int | float, layer: str, train_x: Tensor, test_x: Tensor, train_masks: Tensor,
                      test_masks: Tensor, grid: tuple[int, int], seed: int = 0,
                      n_boot: int = N_BOOT) -> tuple[dict[str, Any], np.ndarray]:
    """One grid row (SEGMENTATION_COLUMNS) from per-patch features (n, N, D), and the test predictions
    (n_test, H, W)."""
    res = segmentation_probe(train_x, train_masks, test_x, test_masks, grid, seed=seed)
    target = test_masks.numpy()  # (n_test, H, W)
    pred = upsample(res["test_pred"], grid, target.shape[1:])  # (n_test, H, W)
    classes = int(max(target.max(), pred.max(), train_masks.max())) + 1
    key = LayerKey.parse(layer)
    row = {"timestep": as_time(timestep), "layer": layer, "kind": key.kind, "depth": key.index,
           **bootstrap_scores(confusion(pred, target, classes), n_boot, seed),
           "patch_accuracy": res["patch_accuracy"], "n_train": len(train_x), "n_test": len(test_x), "C": res["C"]}
    return row, pred


# -- the grid ---------------------------------------------------------------------------------------------------
@dataclass
class SegmentationGrid:
    """The grid's rows and the predicted masks of the first test images at each of its cells (rows' order)."""

    rows: pd.DataFrame  # SEGMENTATION_COLUMNS
    pred: np.ndarray  # (n_cells, n_show, H, W) uint8
    masks: np.ndarray  # (n_show, H, W) uint8
    images: np.ndarray  # (n_show, C, H, W) in [-1, 1]
    patch_ceiling: float  # mIoU of the test patches' true majority classes: the best any per-patch probe can do


def patch_ceiling(masks: Tensor, grid: tuple[int, int]) -> float:
    """mIoU on masks (n, H, W) of each patch's own majority class painted over the patch."""
    target = masks.numpy()
    best = upsample(patch_labels(masks, grid).numpy(), grid, target.shape[1:])  # (n, H, W)
    return float(scores(confusion(best, target, int(target.max()) + 1).sum(axis=0))[0])


def _masks(splits: ProbeSplits) -> tuple[Tensor, Tensor]:
    if splits.train.masks is None:
        raise ValueError(f"data: {splits.train.name} has no segmentation masks; segmentation needs a dataset with "
                         "masks (shapes, or an npz: file with a masks array)")
    return splits.train.masks, splits.test.masks


def segmentation_grid(source: Source, data: ImageDataset | str, timesteps: Iterable[int | float],
                      layers: Iterable[int] | None, n_images: int = SEGMENTATION_IMAGES, seed: int = 0, *,
                      n_test: int | None = None, n_show: int = N_SHOW, n_boot: int = N_BOOT, device: str = "cpu",
                      progress: bool = False) -> SegmentationGrid:
    """Probe every (timestep, block) cell of `source`'s model and the raw-pixel baseline at each timestep (see the
    module doc). Features are extracted one timestep at a time (tokens of `layers` only, not cached), so memory
    holds one timestep's tokens: (n_images + n_test) · N · D · 4 bytes per layer."""
    config = source.model.config
    grid = (config["input_size"] // config["patch_size"],) * 2
    splits = probe_splits(data, n_images, seed, n_test, config["input_size"])
    train_masks, test_masks = _masks(splits)
    rows, preds = [], []

    def add(t: int | float, layer: str, train_x: Tensor, test_x: Tensor) -> None:
        row, pred = segmentation_cell(t, layer, train_x, test_x, train_masks, test_masks, grid, seed, n_boot)
        rows.append(row)
        preds.append(pred[:n_show].astype(np.uint8))

    for t in source.schedule.check_timesteps(timesteps):
        bank = extract_features(source.model, data, [t], layers, n_images, seed, tokens=True, cache=False,
                                device=device, progress=progress, n_test=n_test, schedule=source.schedule)
        for layer in bank.layers:
            tokens = bank.tokens[(t, layer)]  # (n, N, D), train rows then test rows
            add(t, layer, tokens[~bank.is_test], tokens[bank.is_test])
        del bank  # one timestep's tokens at a time
        add(t, PIXELS, patchify(splits.noisy("train", t, source.schedule), grid),
            patchify(splits.noisy("test", t, source.schedule), grid))  # (n, N, C·p²)
    return SegmentationGrid(pd.DataFrame(rows, columns=SEGMENTATION_COLUMNS), np.stack(preds),
                            test_masks[:n_show].numpy().astype(np.uint8), splits.test.images[:n_show].numpy(),
                            patch_ceiling(test_masks, grid))


def segmentation_summary(rows: pd.DataFrame, ceiling: float | None = None) -> dict[str, Any]:
    """summary.json's `segmentation`: the DiT cell of highest mIoU with its CIs, the raw-pixel baseline (best
    over timesteps, and at the best cell's timestep) and the patch grid's ceiling `patch_ceiling_miou`."""
    dit, pixels = rows[rows.layer != PIXELS], rows[rows.layer == PIXELS]
    best = dit.loc[dit.miou.idxmax()]
    at_t = pixels[pixels.timestep == best.timestep].miou
    return {"best_miou": float(best.miou), "miou_ci_low": float(best.miou_ci_low),
            "miou_ci_high": float(best.miou_ci_high), "pixel_accuracy": float(best.pixel_accuracy),
            "pixel_accuracy_ci_low": float(best.pixel_accuracy_ci_low),
            "pixel_accuracy_ci_high": float(best.pixel_accuracy_ci_high),
            "timestep": float(best.timestep) if isinstance(best.timestep, float) else int(best.timestep),
            "layer": str(best.layer),
            "pixel_baseline_miou": float(pixels.miou.max()),
            "pixel_baseline_miou_at_best_timestep": float(at_t.iloc[0]) if len(at_t) else None,
            "patch_ceiling_miou": ceiling, "n_train": int(best.n_train), "n_test": int(best.n_test),
            "ci": "95% percentile bootstrap over test images"}


# -- the run's artefacts ----------------------------------------------------------------------------------------
def artefact_paths(run: RunDir) -> tuple[Path, Path]:
    """(segmentation.parquet, segmentation_masks.npz) of the run."""
    return run.artefact(SEGMENTATION.artefact), run.artefact("segmentation_masks")


def write_segmentation(run: RunDir, seg: SegmentationGrid) -> dict[str, Path]:
    """The grid, its predicted masks and summary.json's `segmentation` (other keys kept), written atomically."""
    grid_path, masks_path = artefact_paths(run)
    atomic_write_parquet(grid_path, seg.rows)
    buf = io.BytesIO()
    np.savez_compressed(buf, pred=seg.pred, timesteps=seg.rows.timestep.to_numpy(),
                        layers=seg.rows.layer.to_numpy(dtype=str), masks=seg.masks,
                        images=seg.images.astype(np.float16))
    atomic_write_bytes(masks_path, buf.getvalue())
    summary_path = run.artefact("summary")
    atomic_write_json(summary_path, {**run.summary_or_empty(), "segmentation": segmentation_summary(seg.rows, seg.patch_ceiling)})
    return {"segmentation": grid_path, "segmentation_masks": masks_path, "summary": summary_path}


def run_timesteps(run: RunDir, num_timesteps: int) -> list[int | float]:
    """The timesteps of the run's classification grid (analysis/probe.parquet), else `default_timesteps`."""
    probe = run.artefact("probe")
    if probe.is_file():
        return sorted(pd.read_parquet(probe, columns=["timestep"]).timestep.unique().tolist())
    return default_timesteps(num_timesteps)


def analyze_segmentation(run: str | Path, timesteps: Iterable[int | float] | None = None,
                         layers: Iterable[int] | None = None, n_images: int = SEGMENTATION_IMAGES, seed: int = 0,
                         *, data: ImageDataset | str | None = None, n_test: int | None = None,
                         n_show: int = N_SHOW, n_boot: int = N_BOOT, device: str = "cpu",
                         progress: bool = True) -> dict[str, Path]:
    """The segmentation grid of a run dir, written to its analysis/ (module doc) without touching the other
    analyses; `timesteps` default to those of its probe.parquet, `layers` (block indices) to all, `data` to the
    run's dataset. Returns {name: path}."""
    src = resolve_source(run)
    if src.run is None:
        raise ValueError(f"run: {run} is not a run dir (no config.json)")
    ts = run_timesteps(src.run, src.schedule.num_timesteps) if timesteps is None else list(timesteps)
    seg = segmentation_grid(src, src.data_spec if data is None else data, ts, layers, n_images, seed,
                            n_test=n_test, n_show=n_show, n_boot=n_boot, device=device, progress=progress)
    return write_segmentation(src.run, seg)


def has_masks(data: ImageDataset | str, image_size: int | None = None) -> bool:
    """Whether the dataset carries segmentation masks (read from a two-image probe split)."""
    return probe_splits(data, 2, 0, 1, image_size).train.masks is not None


# -- reading back -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StoredMasks:
    """segmentation_masks.npz as read back: the first test images, their masks, and each cell's predictions."""

    cells: dict[tuple[float, str], int]  # (timestep, layer) -> index into pred
    pred: np.ndarray  # (n_cells, n_show, H, W) uint8
    masks: np.ndarray  # (n_show, H, W) uint8
    images: np.ndarray  # (n_show, C, H, W) float32 in [-1, 1]

    @classmethod
    def read(cls, path: str | Path) -> "StoredMasks":
        with np.load(path) as npz:
            cells = {(float(t), str(k)): i for i, (t, k) in enumerate(zip(npz["timesteps"], npz["layers"]))}
            return cls(cells, npz["pred"], npz["masks"], npz["images"].astype(np.float32))

    def at(self, timestep: int | float, layer: str) -> np.ndarray | None:
        """Predicted masks (n_show, H, W) at the cell, None when the grid has no such cell."""
        i = self.cells.get((float(timestep), layer))
        return None if i is None else self.pred[i]


# -- display ----------------------------------------------------------------------------------------------------
def mask_rgb(masks: np.ndarray) -> np.ndarray:
    """Class maps (..., H, W) -> (..., H, W, 3) colours in [0, 1] (MASK_COLOURS, cycling past its length)."""
    return MASK_COLOURS[np.asarray(masks) % len(MASK_COLOURS)]
