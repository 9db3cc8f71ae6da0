"""The analyses `analyze_run` runs beside the selection methods (`analysis.selection.METHODS`), registered.

Each `Analysis` has a frozen options dataclass — its field names are `analyze_run`'s (and the CLI's
`--option`) keywords, checked at entry: an unknown or misspelt one is a ValueError naming it and listing the
valid ones, a bad value one naming the field — the artefact it writes (`aselect_core.train.rundir.ARTEFACTS`),
and `compute(ctx, options)`, which returns the artefact's table (the pipeline writes it), or writes its file
itself (npz, json, a table of its own) and returns the path, or returns None when its options skip it.
They run in registry order after the selections, so each can read the oracle's choice (`ctx.oracle_block`).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from analysis.options import check_count, check_flag
from aselect_core.model.layer_key import LayerKey
from aselect_core.train.rundir import RunDir

EMBEDDING_TIMESTEPS, EMBEDDING_IMAGES = 6, 1000  # the UMAP step: a handful of maps, each seconds on a CPU


@dataclass(frozen=True)
class RunContext:
    """What every analysis of one `analyze_run` call shares: the run, its model and data, the candidate grid,
    and the selections already made (the oracle's among them)."""

    run: Path
    source: Any  # analysis.features.Source
    data: Any  # a dataset spec or ImageDataset
    timesteps: list[int]
    layers: list[int] | None
    n_images: int
    seed: int
    device: str
    progress: bool
    selections: dict[str, Any]  # method -> analysis.selection.Selection

    @property
    def oracle_block(self) -> int:
        return LayerKey.parse(self.selections["oracle"].layer).index


@dataclass(frozen=True)
class ImmseOptions:
    """I(x₀; x_t) by I-MMSE on `immse_images` train images, the run's DiT as the denoiser."""

    immse_images: int = 256

    def __post_init__(self) -> None:
        check_count("immse_images", self.immse_images, 2)


@dataclass(frozen=True)
class RandomInitOptions:
    """The probe grid of a random-init DiT of the run's architecture (`random_init=False` skips it)."""

    random_init: bool = True

    def __post_init__(self) -> None:
        check_flag("random_init", self.random_init)


@dataclass(frozen=True)
class EmbeddingOptions:
    """A UMAP trajectory of the oracle's block (`embedding=False` skips it: the slowest step on tiny grids)."""

    embedding: bool = True

    def __post_init__(self) -> None:
        check_flag("embedding", self.embedding)


@dataclass(frozen=True)
class AttributionOptions:
    """Integrated-gradients maps of the first `attribution_images` test images (0 skips it)."""

    attribution_images: int = 0

    def __post_init__(self) -> None:
        check_count("attribution_images", self.attribution_images, 0)


@dataclass(frozen=True)
class GenerationOptions:
    """FD / KID / precision-recall of `generation_samples` DDIM samples (0 skips it)."""

    generation_samples: int = 0

    def __post_init__(self) -> None:
        check_count("generation_samples", self.generation_samples, 0)


def embedding_timesteps(timesteps: list[int], k: int = EMBEDDING_TIMESTEPS) -> list[int]:
    """k evenly spaced ones of the sorted candidate timesteps, first and last included (all when there are <= k)."""
    ts = sorted(timesteps)
    return sorted({ts[i] for i in np.linspace(0, len(ts) - 1, min(k, len(ts))).round().astype(int)})


def _immse(ctx: RunContext, opts: ImmseOptions) -> pd.DataFrame:
    """I(x0; x_t) on `immse_images` train images, the run's DiT (null class, eps channels) as the denoiser."""
    from analysis.features import probe_splits
    from analysis.mi import mi_x0_xt

    model = ctx.source.model.eval().to(ctx.device)
    channels = model.config["in_channels"]
    images = probe_splits(ctx.data, opts.immse_images, ctx.seed, 0, model.config["input_size"]).train.images
    images = images.to(ctx.device)  # (n, C, H, W)

    def denoiser(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model(x, t, None)[:, :channels]  # (B, C, H, W) eps_hat

    return mi_x0_xt(denoiser, images, ctx.source.schedule, ctx.timesteps, seed=ctx.seed)


def _random_init(ctx: RunContext, opts: RandomInitOptions) -> pd.DataFrame | None:
    from analysis.baselines import random_init_grid

    if not opts.random_init:
        return None
    return random_init_grid(ctx.run, ctx.timesteps, ctx.layers, ctx.n_images, ctx.seed, dataset=ctx.data,
                            device=ctx.device)


def _umap(ctx: RunContext, opts: EmbeddingOptions) -> Path | None:
    from analysis.embedding import umap_for_run

    if not opts.embedding:
        return None
    umap_for_run(ctx.run, ctx.oracle_block, embedding_timesteps(ctx.timesteps), min(ctx.n_images, EMBEDDING_IMAGES),
                 ctx.seed, dataset=ctx.data)  # writes umap.parquet
    return RunDir(ctx.run).artefact("umap")


def _attribution(ctx: RunContext, opts: AttributionOptions) -> Path | None:
    from analysis.attribution import write_run_attributions

    if opts.attribution_images == 0:
        return None
    return write_run_attributions(ctx.run, range(opts.attribution_images), embedding_timesteps(ctx.timesteps),
                                  ctx.oracle_block, ctx.n_images, ctx.seed)


def _generation(ctx: RunContext, opts: GenerationOptions) -> Path | None:
    from analysis.generation import write_generation

    if opts.generation_samples == 0:
        return None
    write_generation(ctx.run, n_samples=opts.generation_samples, seed=ctx.seed, device=ctx.device,
                     progress=ctx.progress)
    return RunDir(ctx.run).artefact("generation")


@dataclass(frozen=True)
class Analysis:
    """One registered analysis: `compute(ctx, options)`, its options dataclass, the artefact it writes."""

    compute: Callable[[RunContext, Any], pd.DataFrame | Path | None]
    options: type
    artefact: str


ANALYSES: dict[str, Analysis] = {
    "immse": Analysis(_immse, ImmseOptions, "immse"),
    "random_init": Analysis(_random_init, RandomInitOptions, "random_init"),
    "umap": Analysis(_umap, EmbeddingOptions, "umap"),
    "attribution": Analysis(_attribution, AttributionOptions, "attribution"),
    "generation": Analysis(_generation, GenerationOptions, "generation"),
}


def analysis_fields() -> dict[str, str]:
    """Every registered analysis' option name -> the analysis that declares it."""
    return {f.name: name for name, a in ANALYSES.items() for f in fields(a.options)}


def analysis_options(kw: dict[str, Any]) -> dict[str, Any]:
    """{analysis: its options instance} from keywords that name registered analysis options; each dataclass
    checks its values (a one-line ValueError naming the field)."""
    owner = analysis_fields()
    return {name: a.options(**{k: v for k, v in kw.items() if owner.get(k) == name}) for name, a in ANALYSES.items()}
