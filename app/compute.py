"""Run-level computations the pages start on demand, composed from `analysis` functions (the numbers are theirs).

- `umap_points`: pooled features of one block at several timesteps (`extract_features`, cached in the run dir)
  -> `analysis.embedding.umap_trajectory`; written to analysis/umap.parquet (timestep, index, x, y, label, layer),
  the file `analysis.figures` reads. `index` is the row of `probe_images(...).train`.
- `attribution_maps`: a `LinearProbe` fitted per timestep on the same features, then
  `analysis.attribution.attribute_across_timesteps` for one image and class, with the image's fixed noise.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from analysis.features import FeatureBank, extract_features, probe_splits, resolve_source
from aselect_core.train.rundir import RunDir, write_parquet

Progress = Callable[[float, str], None]


def probe_images(run: Path, n_images: int, seed: int = 0):
    """The train/test images (ProbeSplits) the run's features are extracted from."""
    cfg = RunDir(run).config()
    return probe_splits(cfg.data, n_images, seed, None, cfg.image_size)


def _bank(run: Path, timesteps: list[int], layer: int, n_images: int) -> FeatureBank:
    return extract_features(run, None, timesteps, [layer], n_images, progress=False)


def umap_points(run: Path, layer: int, timesteps: list[int], n_images: int,
                progress: Progress = lambda f, s: None) -> pd.DataFrame:
    """UMAP trajectory of block `layer` over `timesteps` for n_images train images; writes analysis/umap.parquet."""
    from analysis.embedding import umap_trajectory

    progress(0.05, "extracting features")
    bank = _bank(run, timesteps, layer, n_images)
    train = ~bank.is_test
    progress(0.4, "UMAP per timestep (the first one in a process compiles numba kernels)")
    key = f"block.{layer}"
    points, _ = umap_trajectory({t: bank.pooled[(t, key)][train] for t in timesteps}, bank.labels[train])
    points = points.assign(layer=key)
    write_parquet(RunDir(run).analysis / "umap.parquet", points)
    progress(1.0, "done")
    return points


def attribution_maps(run: Path, image: int, target: int, timesteps: list[int], layer: int, n_images: int,
                     n_steps: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """(IG maps (n_t, H, W) summed over channels, the image (C, H, W) in [-1, 1]) of test image `image`'s
    class-`target` probe logit at each t."""
    from analysis.attribution import LinearProbe, attribute_across_timesteps

    bank = _bank(run, timesteps, layer, n_images)
    train = ~bank.is_test
    probes = {t: LinearProbe.fit(bank.pooled[(t, f"block.{layer}")][train], bank.labels[train]) for t in timesteps}
    splits, source = probe_images(run, n_images), resolve_source(run)
    x0, noise = splits.test.images[image:image + 1], splits.noise("test")[image:image + 1]
    attrs, _ = attribute_across_timesteps(source.model, probes, x0, target, timesteps, n_steps, layer=layer,
                                          schedule=source.schedule, noise=noise)
    return attrs[:, 0].sum(dim=1).numpy(), x0[0].numpy()  # (n_t, H, W), (C, H, W)


def depth(run: Path) -> int:
    """Number of DiT blocks of the run's model."""
    return resolve_source(run).model.config["depth"]
