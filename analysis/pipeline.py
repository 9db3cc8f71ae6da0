"""`analyze_run`: the full analysis of one run dir, written to its `analysis/` folder (what `aselect analyze` runs).

Outputs (parquet unless noted), all over the same candidate timesteps (default 0, 50, ..., 950) and blocks:
- probe.parquet      oracle probe grid (mean pooling, linear + k-NN) plus raw-pixel baseline rows (layer
                     "pixels": flattened x_t with the same images, splits and per-image noise) at each timestep
- hfr.parquet        mean/std high-frequency ratio per (timestep, layer), from the hfr method's single pass
- mi.parquet         label MI I(y; pooled features) per (timestep, layer), from the mi method
- immse.parquet      I(x0; x_t) per timestep by I-MMSE with the run's EMA DiT as denoiser (null class)
- selection.parquet  one row per selection method (choice, cost, regret and cost ratio vs the oracle)
- random_init.parquet probe grid of a random-init DiT of the run's architecture ("random-gates" init,
                     `analysis.baselines`) on the same images, splits, noise and probe
- summary.json       best (timestep, layer) with its 95% CI and whether the runner-up cell lies inside it,
                     accuracies, pixel and random-init baselines, costs, HFR-accuracy Spearman rho
- umap.parquet       (`embedding=True`) UMAP trajectory of the oracle-best block over EMBEDDING_TIMESTEPS evenly
                     spaced candidate timesteps, at most EMBEDDING_IMAGES train images (`analysis.embedding`)
- attribution.npz    (`attribution_images` > 0) integrated-gradients maps of the first test images' own-label
                     probe logits at the oracle-best block, over the same timesteps as the UMAP
                     (`analysis.attribution.write_run_attributions`)
- segmentation.parquet, segmentation_masks.npz  (`tasks` with "segmentation": by default where the dataset has
                     masks) per-patch segmentation probe grid (mIoU, pixel accuracy, bootstrap 95% CIs) beside a
                     raw-pixel per-patch baseline, predicted masks of a few test images per cell, and summary.json's
                     `segmentation` (`analysis.segmentation`)
- generation.json    (`generation_samples` > 0) FD, KID and precision/recall of DDIM samples vs test images in a
                     domain classifier's features (`analysis.generation.write_generation`; not Inception FID)
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from analysis.attribution import write_run_attributions
from analysis.baselines import random_init_grid
from analysis.embedding import umap_for_run
from analysis.features import probe_splits, resolve_source
from analysis.generation import write_generation
from analysis.mi import mi_x0_xt
from analysis.probe import pixel_baseline
from analysis.segmentation import SEGMENTATION_IMAGES, analyze_segmentation, has_masks
from analysis.selection import (METHODS, Selection, default_timesteps, hfr_accuracy_correlation, options_for,
                                select_timestep)
from aselect_core.datasets import ImageDataset
from aselect_core.diffusion import as_time
from aselect_core.model.layer_key import LayerKey
from aselect_core.io import atomic_write_json, atomic_write_parquet
from aselect_core.train.rundir import RunDir

METHOD_ORDER = ("oracle", "hfr", "mi", "coarse-to-fine")  # the oracle first: the others are scored against it
EMBEDDING_TIMESTEPS, EMBEDDING_IMAGES = 6, 1000  # the UMAP step: a handful of maps, each seconds on a CPU
TASKS = ("classification", "segmentation")  # classification: every analysis but segmentation's


def _finite(x: float) -> float | None:
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


def immse_curve(source, data: ImageDataset | str, timesteps: list[int], n_images: int, seed: int,
                device: str = "cpu") -> pd.DataFrame:
    """I(x0; x_t) on n_images train images, the run's DiT (null class, eps channels) as the denoiser."""
    model = source.model.eval().to(device)
    channels = model.config["in_channels"]
    images = probe_splits(data, n_images, seed, 0, model.config["input_size"]).train.images.to(device)

    def denoiser(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model(x, t, None)[:, :channels]  # (B, C, H, W) eps_hat

    return mi_x0_xt(denoiser, images, source.schedule, timesteps, seed=seed)


def embedding_timesteps(timesteps: list[int], k: int = EMBEDDING_TIMESTEPS) -> list[int]:
    """k evenly spaced ones of the sorted candidate timesteps, first and last included (all when there are <= k)."""
    ts = sorted(timesteps)
    return sorted({ts[i] for i in np.linspace(0, len(ts) - 1, min(k, len(ts))).round().astype(int)})


def best_cell(grid: pd.DataFrame) -> dict[str, Any]:
    """The most accurate cell of a probe grid with its 95% CI, and whether the runner-up lies inside that CI
    (then the grid cannot tell the two apart on this test set)."""
    ranked = grid.sort_values("accuracy", ascending=False, kind="stable")
    best = ranked.iloc[0]
    runner_up = ranked.iloc[1] if len(ranked) > 1 else None
    return {"timestep": as_time(best.timestep), "layer": best.layer, "accuracy": float(best.accuracy),
            "accuracy_ci_low": _finite(float(best.accuracy_ci_low)),
            "accuracy_ci_high": _finite(float(best.accuracy_ci_high)),
            "runner_up": None if runner_up is None else {
                "timestep": as_time(runner_up.timestep), "layer": runner_up.layer,
                "accuracy": float(runner_up.accuracy),
                "within_ci": bool(runner_up.accuracy >= best.accuracy_ci_low)}}


def summarise(sels: dict[str, Selection], probe: pd.DataFrame, hfr_grid: pd.DataFrame,
              random_init: pd.DataFrame | None = None) -> dict[str, Any]:
    dit, pixels = probe[probe.layer != "pixels"], probe[probe.layer == "pixels"]
    best = dit.loc[dit.accuracy.idxmax()]
    pixels_at_best = pixels[pixels.timestep == best.timestep].accuracy
    cells = dit.merge(hfr_grid, on=["timestep", "layer"])
    rho, p = hfr_accuracy_correlation(cells) if len(cells) >= 3 else (math.nan, math.nan)
    summary = {
        "best": {**best_cell(dit), "knn_accuracy": _finite(float(best.knn_accuracy))},
        "pixel_baseline": {"best_accuracy": float(pixels.accuracy.max()),
                           "accuracy_at_best_timestep": float(pixels_at_best.iloc[0])},
        "hfr_accuracy_spearman": {"rho": _finite(rho), "p": _finite(p)},
        "methods": {m: {"timestep": s.timestep, "layer": s.layer, "accuracy": _finite(s.accuracy_at_choice),
                        "regret_points": _finite(s.regret), "cost_image_passes": s.cost_image_passes,
                        "cost_ratio": _finite(s.cost_ratio), "wall_seconds": s.wall_seconds}
                    for m, s in sels.items()},
    }
    if random_init is not None:
        at_best = random_init[(random_init.timestep == best.timestep) & (random_init.layer == best.layer)].accuracy
        summary["random_init_baseline"] = {
            "best_accuracy": float(random_init.accuracy.max()), "init": str(random_init.init.iloc[0]),
            "accuracy_at_best_cell": _finite(float(at_best.iloc[0])) if len(at_best) else None}
    return summary


def resolve_tasks(tasks: Sequence[str] | None, data: ImageDataset | str, image_size: int) -> tuple[str, ...]:
    """`tasks` checked against TASKS; None = classification, plus segmentation when the dataset has masks."""
    if tasks is None:
        return TASKS if has_masks(data, image_size) else TASKS[:1]
    if not tasks or set(tasks) - set(TASKS):
        raise ValueError(f"tasks: expected a non-empty subset of {list(TASKS)}, got {list(tasks)}")
    return tuple(t for t in TASKS if t in tasks)


def analyze_run(run: str | Path, data: ImageDataset | str | None = None, timesteps: list[int] | None = None,
                layers: list[int] | None = None, n_images: int = 1000, seed: int = 0, progress: bool = True, *,
                methods: tuple[str, ...] = METHOD_ORDER, immse_images: int = 256, device: str = "cpu",
                embedding: bool = True, attribution_images: int = 0, random_init: bool = True,
                generation_samples: int = 0, tasks: Sequence[str] | None = None,
                segmentation_images: int = SEGMENTATION_IMAGES, **method_kw: Any) -> dict[str, Path]:
    """Run every analysis on `run` and write the files of the module doc; returns {name: path}.

    `data` defaults to the run's dataset, `layers` (block indices) to all blocks. `methods` must include
    "oracle". `random_init=False` skips the random-init DiT grid (as many image-passes as the oracle's, no
    training). `embedding=False` skips the UMAP step (the slowest part on tiny grids); `attribution_images` > 0
    maps that many test images (3·16 image-passes per image and timestep); `generation_samples` > 0 samples that
    many images (DDIM, 50 steps) and scores them against as many test images (analysis/generation.json).
    `tasks` (TASKS; default `resolve_tasks`): "segmentation" runs `analyze_segmentation` on min(n_images,
    segmentation_images) train images over the same timesteps and layers; without "classification", only that.
    Extra keywords are method options (hfr_mode, hfr_images, mi_method, coarse, n_test, ...), each routed to the
    methods that declare it.
    """
    rd = RunDir(Path(run))
    unknown = [m for m in methods if m not in METHODS]
    if unknown or "oracle" not in methods:
        raise ValueError(f"methods: expected names from {sorted(METHODS)} including 'oracle', got {list(methods)}")
    source = resolve_source(run)
    if source.run is None:
        raise ValueError(f"run: {run} is not a run dir (no config.json)")
    data = source.data_spec if data is None else data
    ts = default_timesteps(source.schedule.num_timesteps) if timesteps is None else timesteps
    tasks = resolve_tasks(tasks, data, source.model.config["input_size"])

    def segmentation() -> dict[str, Path]:
        return analyze_segmentation(run, ts, layers, min(n_images, segmentation_images), seed, data=data,
                                    device=device, progress=progress)

    if "classification" not in tasks:
        return segmentation()
    common = dict(dataset=data, layer=layers, timesteps=ts, n_images=n_images, seed=seed, progress=progress,
                  device=device)
    order = sorted(methods, key=METHOD_ORDER.index)
    options = options_for(order, method_kw)
    sels = {m: select_timestep(run, method=m, **common, **options[m]) for m in order}

    splits = probe_splits(data, n_images, seed, None, source.model.config["input_size"])
    probe = pd.concat([sels["oracle"].grid, pixel_baseline(splits, tuple(ts), source.schedule)], ignore_index=True)
    hfr_grid = sels["hfr"].grid if "hfr" in sels else pd.DataFrame(columns=["timestep", "layer", "hfr_mean"])
    tables = {"probe": probe, "hfr": hfr_grid, "selection": pd.DataFrame([s.row() for s in sels.values()]),
              "immse": immse_curve(source, data, ts, immse_images, seed, device)}
    if "mi" in sels:
        tables["mi"] = sels["mi"].grid
    if random_init:
        tables["random_init"] = random_init_grid(run, ts, layers, n_images, seed, dataset=data, device=device)
    paths = {}
    for name, df in tables.items():
        paths[name] = rd.artefact(name)
        atomic_write_parquet(paths[name], df)
    paths["summary"] = rd.artefact("summary")
    summary = summarise(sels, probe, hfr_grid, tables.get("random_init"))
    if "segmentation" not in tasks and "segmentation" in (previous := rd.summary_or_empty()):
        summary["segmentation"] = previous["segmentation"]  # segmentation.parquet stays too: keep its summary
    atomic_write_json(paths["summary"], summary)
    block = LayerKey.parse(sels["oracle"].layer).index
    if embedding:
        umap_for_run(run, block, embedding_timesteps(ts), min(n_images, EMBEDDING_IMAGES), seed, dataset=data)
        paths["umap"] = rd.artefact("umap")
    if attribution_images > 0:
        paths["attribution"] = write_run_attributions(run, range(attribution_images), embedding_timesteps(ts), block,
                                                      n_images, seed)
    if generation_samples > 0:
        write_generation(run, n_samples=generation_samples, seed=seed, device=device, progress=progress)
        paths["generation"] = rd.artefact("generation")
    if "segmentation" in tasks:
        paths.update(segmentation())
    return paths
