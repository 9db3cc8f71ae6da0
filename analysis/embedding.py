"""UMAP maps of DiT features at one (timestep, layer), and a trajectory of maps across timesteps.

`embed_features` is one seeded UMAP (umap-learn) of an (n, D) feature matrix. Below `PRECOMPUTED_BELOW` rows it
hands UMAP a precomputed Euclidean distance matrix (sklearn `pairwise_distances`, BLAS): umap-learn's own
small-data path computes the same matrix through its numba metric called from sklearn once per pair. Measured
on sklearn digits (1,797 × 64, 500 epochs, warm numba cache, one thread): 2.4-2.8 s CPU precomputed against
4.5-5.5 s default (the rest is the 500 layout epochs, the same in both). A fixed `random_state` makes umap-learn
run single threaded, so the map is a pure function of (x, seed, settings).

`umap_trajectory` embeds the same n images at each timestep. Independent UMAP maps of neighbouring timesteps
differ by an arbitrary rotation/reflection (and layout), so each map is (1) initialised from the previous
timestep's map (UMAP's `init=`), which keeps the layout, and (2) rigidly aligned to it by orthogonal Procrustes
(rotation/reflection + translation; distances, hence trustworthiness, unchanged). A point's path across t is
then readable. Each map's trustworthiness (sklearn, in [0, 1]: how many of its 2-D neighbours are real
neighbours in feature space) is reported next to it.

numba caches its compiled code in `NUMBA_CACHE_DIR`, which must be set before numba is first imported:
importing this module sets it (unless the caller already has) to `.cache/numba` under the repo root, and
`_import_umap` turns caching on for umap's own kernels, so umap-learn compiles once per machine instead of
once per process (digits, one thread: `import umap` 22 s CPU cold, 1.5 s warm; the first fit compiles ~13 s more
when cold, nothing when warm).

`umap_for_run` is the run-level step (the pipeline's and the Embeddings page's): one block's pooled features of
a run's probe images (`analysis.features.extract_features`, cached in the run dir) -> `umap_trajectory`,
written to the run's analysis/umap.parquet, the file `analysis.figures`' `umap` figure reads.
"""
from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from scipy.linalg import orthogonal_procrustes
from sklearn.manifold import trustworthiness
from sklearn.metrics import pairwise_distances

from analysis.features import extract_features
from aselect_core.io import atomic_write_parquet
from aselect_core.train.rundir import RunDir

NUMBA_CACHE = Path(__file__).resolve().parents[1] / ".cache" / "numba"
PRECOMPUTED_BELOW = 4000  # rows; above this a dense n×n matrix costs more than umap-learn's NN-descent
Progress = Callable[[float, str], None]  # (fraction done, what is running)


def use_project_numba_cache(path: Path = NUMBA_CACHE) -> None:
    """Point numba's on-disk cache at `path` (created on demand) unless NUMBA_CACHE_DIR is already set."""
    if "NUMBA_CACHE_DIR" not in os.environ:
        path.mkdir(parents=True, exist_ok=True)
        os.environ["NUMBA_CACHE_DIR"] = str(path)


use_project_numba_cache()


@functools.cache
def _import_umap():
    """umap-learn with its module-level numba kernels cached on disk (umap compiles them uncached).

    Without this every process spends ~15-30 s of CPU compiling umap's kNN-graph and layout kernels on its
    first fit. `Dispatcher.enable_caching` is the switch `@njit(cache=True)` sets. numba's cache file is named
    after the Python function, not the compile flags, so a function jitted twice (umap's serial and parallel
    layout epoch) is cached once, as its serial variant: the one a fixed random_state runs.
    """
    import numba
    import umap
    from umap import layouts, spectral, umap_, utils

    dispatchers = [obj for module in (umap_, layouts, spectral, utils) for obj in vars(module).values()
                   if isinstance(obj, numba.core.registry.CPUDispatcher)]
    cached = set()
    for d in sorted(dispatchers, key=lambda d: bool(d.targetoptions.get("parallel"))):  # serial first
        if d.py_func not in cached:
            d.enable_caching()
            cached.add(d.py_func)
    return umap


def _check_features(x: Any, name: str, min_rows: int) -> np.ndarray:
    a = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64)
    if a.ndim != 2 or len(a) < min_rows or not np.isfinite(a).all():
        raise ValueError(f"{name}: expected a finite (n, D) array with n >= {min_rows}, got shape {a.shape}")
    return a


def embed_features(x: Any, n_neighbors: int = 15, min_dist: float = 0.1, random_state: int = 0,
                   init: str | np.ndarray = "spectral", n_epochs: int | None = None,
                   precomputed: bool | None = None, **umap_kw: Any) -> np.ndarray:
    """2-D UMAP of features x (n, D) -> (n, 2) float32, deterministic for a fixed `random_state`.

    `precomputed=None` passes exact Euclidean distances when n < PRECOMPUTED_BELOW (faster, same neighbours);
    True/False forces either path. `init` is "spectral", "random" or an (n, 2) starting layout. Extra
    keywords go to `umap.UMAP`.
    """
    umap = _import_umap()  # on use: umap's import is slow; NUMBA_CACHE_DIR is set by then (module import above)
    a = _check_features(x, "x", n_neighbors + 1)
    if isinstance(init, np.ndarray) and init.shape != (len(a), 2):
        raise ValueError(f"init: expected an ({len(a)}, 2) layout, got shape {init.shape}")
    use_dist = len(a) < PRECOMPUTED_BELOW if precomputed is None else precomputed
    reducer = umap.UMAP(n_components=2, n_neighbors=n_neighbors, min_dist=min_dist, random_state=random_state,
                        init=init, n_epochs=n_epochs, metric="precomputed" if use_dist else "euclidean",
                        **umap_kw)
    data = pairwise_distances(a) if use_dist else a  # (n, n) or (n, D)
    with warnings.catch_warnings():  # umap's notes on what a seed / precomputed metric switch off: chosen here
        warnings.filterwarnings("ignore", message=".*(inverse_transform will be unavailable|overridden to 1)")
        return reducer.fit_transform(data).astype(np.float32)  # (n, 2)


def procrustes_align(moving: np.ndarray, target: np.ndarray) -> np.ndarray:
    """`moving` (n, 2) rotated/reflected and translated onto `target` (n, 2) (least squares, no scaling)."""
    mu_m, mu_t = moving.mean(axis=0), target.mean(axis=0)
    rotation, _ = orthogonal_procrustes(moving - mu_m, target - mu_t)  # (2, 2) orthogonal
    return ((moving - mu_m) @ rotation + mu_t).astype(moving.dtype)


def layout_disparity(a: np.ndarray, b: np.ndarray) -> float:
    """Sum of squared differences of two (n, 2) layouts after centring and scaling each to unit norm.

    scipy.spatial.procrustes' disparity *before* its rotation step: 0 for layouts equal up to translation and
    scale, up to 4; it measures how far apart two maps are as drawn, which alignment is meant to reduce.
    """
    a, b = a - a.mean(axis=0), b - b.mean(axis=0)
    return float(((a / np.linalg.norm(a) - b / np.linalg.norm(b)) ** 2).sum())


def umap_trajectory(features_by_t: dict[int, Any], labels: Any, n_neighbors: int = 15, min_dist: float = 0.1,
                    random_state: int = 0, n_epochs: int | None = None, init_from_previous: bool = True,
                    procrustes: bool = True, trust_neighbors: int = 5,
                    **umap_kw: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """UMAP maps of the same n images at each timestep, each aligned to the previous timestep's map.

    features_by_t: {t: (n, D)} with row i the same image at every t; labels (n,).
    Returns (points, quality): points has columns timestep, index, x, y, label (n rows per timestep, timesteps
    ascending); quality has timestep, trustworthiness, n_neighbors and disparity_to_previous (NaN at the first
    timestep). `init_from_previous` / `procrustes` switch the two alignment steps off (for comparisons).
    """
    if not features_by_t:
        raise ValueError("features_by_t: expected at least one timestep, got an empty dict")
    labels = np.asarray(labels.cpu() if hasattr(labels, "cpu") else labels)
    feats = {int(t): _check_features(x, f"features_by_t[{t}]", n_neighbors + 1) for t, x in features_by_t.items()}
    n = len(labels)
    if labels.ndim != 1 or any(len(x) != n for x in feats.values()):
        raise ValueError(f"features_by_t: expected every timestep to hold the same {n} images as labels (n,), "
                         f"got row counts {sorted({len(x) for x in feats.values()})} and labels shape {labels.shape}")
    if not 1 <= trust_neighbors < n / 2:
        raise ValueError(f"trust_neighbors: expected an integer in [1, n/2) = [1, {n / 2:g}), got {trust_neighbors}")
    points, quality, previous = [], [], None
    for t in sorted(feats):
        init = previous if (init_from_previous and previous is not None) else "spectral"
        emb = embed_features(feats[t], n_neighbors, min_dist, random_state, init, n_epochs, **umap_kw)  # (n, 2)
        if procrustes and previous is not None:
            emb = procrustes_align(emb, previous)
        quality.append({"timestep": t, "trustworthiness": trustworthiness(feats[t], emb, n_neighbors=trust_neighbors),
                        "n_neighbors": trust_neighbors,
                        "disparity_to_previous": np.nan if previous is None else layout_disparity(emb, previous)})
        points.append(pd.DataFrame({"timestep": t, "index": np.arange(n), "x": emb[:, 0], "y": emb[:, 1],
                                    "label": labels}))
        previous = emb
    return pd.concat(points, ignore_index=True), pd.DataFrame(quality)


def umap_for_run(run: str | Path, layer: int, timesteps: list[int], n_images: int, seed: int = 0,
                 progress: Progress | None = None, *, dataset: Any = None, **umap_kw: Any) -> pd.DataFrame:
    """UMAP trajectory of block `layer`'s pooled features of the run's n_images probe train images over `timesteps`.

    Returns umap_trajectory's points plus a `layer` column ("block.L"); `index` is the row of
    `analysis.features.run_splits(run, n_images, seed).train` (of `dataset`'s splits when one is given instead of
    the run's). `seed` draws the images, their noise and the UMAP layout. Writes the points to the run's
    analysis/umap.parquet. Extra keywords go to `umap_trajectory`.
    """
    report = progress or (lambda fraction, message: None)
    report(0.05, "extracting features")
    bank = extract_features(run, dataset, timesteps, [layer], n_images, seed, progress=False)
    train, key = ~bank.is_test, bank.layers[0]
    report(0.4, "UMAP per timestep (the first one in a process compiles numba kernels)")
    points, _ = umap_trajectory({t: bank.pooled[(t, key)][train] for t in bank.timesteps}, bank.labels[train],
                                random_state=seed, **umap_kw)
    points = points.assign(layer=key)
    atomic_write_parquet(RunDir(Path(run)).artefact("umap"), points)
    report(1.0, "done")
    return points
