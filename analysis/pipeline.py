"""`analyze_run`: the full analysis of one run dir, written to its `analysis/` folder (what `aselect analyze` runs).

The selection methods (`analysis.selection.METHODS`, oracle first) run, each writing its registered grid
(`analysis.grids.GRIDS`: probe, hfr, label MI) to that grid's artefact, then the registered analyses
(`analysis.registry.ANALYSES`: immse, random_init, umap, attribution, generation, in that order), then the
summary and, where asked, segmentation; every option keyword is routed to what declares it (`split_options`).
Outputs (parquet unless noted), all over the same candidate timesteps (default 0, 50, ..., 950) and blocks:
- probe.parquet      oracle probe grid (mean pooling, linear + k-NN) plus raw-pixel baseline rows (layer
                     "pixels": flattened x_t with the same images, splits and per-image noise) at each timestep
- hfr.parquet        mean/std/se high-frequency ratio and its 95% interval per (timestep, layer), from the hfr
                     method's single pass
- mi.parquet         label MI I(y; pooled features) per (timestep, layer), from the mi method
- immse.parquet      I(x0; x_t) per timestep by I-MMSE with the run's EMA DiT as denoiser (null class)
- selection.parquet  one row per selection method (choice, cost, regret and cost ratio vs the oracle)
- random_init.parquet probe grid of a random-init DiT of the run's architecture ("random-gates" init,
                     `analysis.baselines`) on the same images, splits, noise and probe
- summary.json       best (timestep, layer) with its 95% CI and whether the runner-up cell lies inside it,
                     accuracies, pixel and random-init baselines, costs, HFR-accuracy Spearman rho
- umap.parquet       (`embedding=True`) UMAP trajectory of the oracle-best block over EMBEDDING_TIMESTEPS evenly
                     spaced candidate timesteps, at most EMBEDDING_IMAGES train images (`analysis.registry`)
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
from dataclasses import fields
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from analysis.features import probe_splits, resolve_source
from analysis.grids import GRIDS
from analysis.hfr import HFR_COLUMNS
from analysis.probe import best_cell, finite_or_none, pixel_baseline
from analysis.registry import ANALYSES, RunContext, analysis_fields, analysis_options
from analysis.segmentation import SEGMENTATION_IMAGES, analyze_segmentation, has_masks
from analysis.selection import (METHODS, Selection, default_timesteps, hfr_accuracy_correlation, options_for,
                                select_timestep)
from aselect_core.datasets import ImageDataset
from aselect_core.io import atomic_write_json, atomic_write_parquet
from aselect_core.train.rundir import RunDir

METHOD_ORDER = ("oracle", "hfr", "mi", "coarse-to-fine")  # the oracle first: the others are scored against it
TASKS = ("classification", "segmentation")  # classification: every analysis but segmentation's


def summarise(sels: dict[str, Selection], probe: pd.DataFrame, hfr_grid: pd.DataFrame,
              random_init: pd.DataFrame | None = None) -> dict[str, Any]:
    dit, pixels = probe[probe.layer != "pixels"], probe[probe.layer == "pixels"]
    best = dit.loc[dit.accuracy.idxmax()]
    pixels_at_best = pixels[pixels.timestep == best.timestep].accuracy
    cells = dit.merge(hfr_grid, on=["timestep", "layer"])
    rho, p = hfr_accuracy_correlation(cells) if len(cells) >= 3 else (math.nan, math.nan)
    summary = {
        "best": {**best_cell(dit), "knn_accuracy": finite_or_none(float(best.knn_accuracy))},
        "pixel_baseline": {"best_accuracy": float(pixels.accuracy.max()),
                           "accuracy_at_best_timestep": float(pixels_at_best.iloc[0])},
        "hfr_accuracy_spearman": {"rho": finite_or_none(rho), "p": finite_or_none(p)},
        "methods": {m: {"timestep": s.timestep, "layer": s.layer, "accuracy": finite_or_none(s.accuracy_at_choice),
                        "regret_points": finite_or_none(s.regret), "cost_image_passes": s.cost_image_passes,
                        "cost_ratio": finite_or_none(s.cost_ratio), "wall_seconds": s.wall_seconds}
                    for m, s in sels.items()},
    }
    if random_init is not None:
        at_best = random_init[(random_init.timestep == best.timestep) & (random_init.layer == best.layer)].accuracy
        summary["random_init_baseline"] = {
            "best_accuracy": float(random_init.accuracy.max()), "init": str(random_init.init.iloc[0]),
            "accuracy_at_best_cell": finite_or_none(float(at_best.iloc[0])) if len(at_best) else None}
    return summary


def selection_tables(sels: dict[str, Selection], pixels: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """{artefact: table} of the selections: each method's registered grid (`Method.grid`) by that grid's artefact
    (the first method's wins: the oracle's whole grid, not coarse-to-fine's part of it), the raw-pixel rows
    appended to the probe grid, an empty HFR table without the hfr method (the Explorer opens on it), and
    selection (one row per method)."""
    tables: dict[str, pd.DataFrame] = {}
    for m, sel in sels.items():
        tables.setdefault(GRIDS[METHODS[m].grid].artefact, sel.grid)
    tables["probe"] = pd.concat([tables["probe"], pixels], ignore_index=True)
    tables.setdefault("hfr", pd.DataFrame(columns=HFR_COLUMNS))
    tables["selection"] = pd.DataFrame([s.row() for s in sels.values()])
    return tables


def resolve_tasks(tasks: Sequence[str] | None, data: ImageDataset | str, image_size: int) -> tuple[str, ...]:
    """`tasks` checked against TASKS; None = classification, plus segmentation when the dataset has masks."""
    if tasks is None:
        return TASKS if has_masks(data, image_size) else TASKS[:1]
    if not tasks or set(tasks) - set(TASKS):
        raise ValueError(f"tasks: expected a non-empty subset of {list(TASKS)}, got {list(tasks)}")
    return tuple(t for t in TASKS if t in tasks)


def split_options(methods: tuple[str, ...], kw: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """`analyze_run`'s extra keywords split into the selection methods' options ({method: its keywords}) and the
    registered analyses' ({analysis: its options instance}); a keyword neither declares is a ValueError naming it
    and listing the valid ones."""
    owners = analysis_fields()
    method_fields = {f.name for m in methods for f in fields(METHODS[m].options)}
    unknown = sorted(set(kw) - method_fields - set(owners))
    if unknown:
        raise ValueError(f"{unknown[0]}: not an option of methods {list(methods)} nor of the analyses "
                         f"{list(ANALYSES)}; expected one of {sorted(method_fields | set(owners))}")
    return (options_for(methods, {k: v for k, v in kw.items() if k not in owners}),
            analysis_options({k: v for k, v in kw.items() if k in owners}))


def analyze_run(run: str | Path, data: ImageDataset | str | None = None, timesteps: list[int] | None = None,
                layers: list[int] | None = None, n_images: int = 1000, seed: int = 0, progress: bool = True, *,
                methods: tuple[str, ...] = METHOD_ORDER, device: str = "cpu", tasks: Sequence[str] | None = None,
                segmentation_images: int = SEGMENTATION_IMAGES, **options: Any) -> dict[str, Path]:
    """Run every analysis on `run` and write the files of the module doc; returns {name: path}.

    `data` defaults to the run's dataset, `layers` (block indices) to all blocks. `methods` must include
    "oracle". `tasks` (TASKS; default `resolve_tasks`): "segmentation" runs `analyze_segmentation` on min(n_images,
    segmentation_images) train images over the same timesteps and layers; without "classification", only that.
    Extra keywords are options, each routed to what declares it: the selection methods' (hfr_mode, hfr_images,
    mi_method, coarse, n_test, ...) and the registered analyses' (`analysis.registry.ANALYSES`: immse_images,
    random_init=False skips the random-init grid, embedding=False the UMAP, attribution_images > 0 maps that many
    test images, generation_samples > 0 samples and scores that many images).
    """
    rd = RunDir(Path(run))
    unknown = [m for m in methods if m not in METHODS]
    if unknown or "oracle" not in methods:
        raise ValueError(f"methods: expected names from {sorted(METHODS)} including 'oracle', got {list(methods)}")
    order = sorted(methods, key=METHOD_ORDER.index)
    method_options, analysis_opts = split_options(tuple(order), options)  # refused before any work
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
    sels = {m: select_timestep(run, method=m, **common, **method_options[m]) for m in order}

    splits = probe_splits(data, n_images, seed, None, source.model.config["input_size"])
    tables = selection_tables(sels, pixel_baseline(splits, tuple(ts), source.schedule))
    probe, hfr_grid = tables["probe"], tables["hfr"]
    ctx = RunContext(Path(run), source, data, ts, layers, n_images, seed, device, progress, sels)
    paths: dict[str, Path] = {}
    for name, analysis in ANALYSES.items():  # a table to write, the file it wrote itself, or None (skipped)
        out = analysis.compute(ctx, analysis_opts[name])
        if isinstance(out, pd.DataFrame):
            tables[analysis.artefact] = out
        elif out is not None:
            paths[name] = out
    for name, df in tables.items():
        paths[name] = rd.artefact(name)
        atomic_write_parquet(paths[name], df)
    paths["summary"] = rd.artefact("summary")
    summary = summarise(sels, probe, hfr_grid, tables.get("random_init"))
    if "segmentation" not in tasks and "segmentation" in (previous := rd.summary_or_empty()):
        summary["segmentation"] = previous["segmentation"]  # segmentation.parquet stays too: keep its summary
    atomic_write_json(paths["summary"], summary)
    if "segmentation" in tasks:
        paths.update(segmentation())
    return paths
