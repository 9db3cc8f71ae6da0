"""`estimate_mi(x, y, method)`: one entry point over the MI estimators, with input checks.

Methods (registry `METHODS`), all in nats:
- `ksg`      k-NN (KSG for continuous y, Ross for labels)              knn.py
- `gaussian` Gaussian closed form, continuous y only                  gaussian.py
- `probe`    H(Y) − held-out cross-entropy of a logistic probe, labels   probe.py
- `infonce`  InfoNCE bound with a learned critic, ceiling log(batch)     infonce.py
- `latent`   PCA to a few dimensions, then `ksg`                         latent.py
y is treated as labels when it is a 1-D integer (or bool) array; anything else is continuous (n, e).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pandas as pd

from analysis.mi.base import MIEstimate
from analysis.mi.gaussian import gaussian_mi
from analysis.mi.infonce import infonce_mi
from analysis.mi.knn import knn_mi
from analysis.mi.latent import latent_mi
from analysis.mi.probe import probe_mi
from analysis.probe import CI_Z

METHODS: dict[str, Callable[..., MIEstimate]] = {
    "ksg": knn_mi, "gaussian": gaussian_mi, "probe": probe_mi, "infonce": infonce_mi, "latent": latent_mi,
}
MIN_SAMPLES = 20


def _as_numpy(a: Any) -> np.ndarray:
    """numpy view of an array-like or a (possibly GPU, grad-tracking) torch tensor."""
    return np.asarray(a.detach().cpu()) if hasattr(a, "detach") else np.asarray(a)


def prepare(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """Check and convert to x float64 (n, d) and y float64 (n, e) or int64 class codes (n,)."""
    x, y = _as_numpy(x), _as_numpy(y)
    if x.ndim not in (1, 2):
        raise ValueError(f"x: expected an (n, d) array, got shape {x.shape}")
    if y.ndim not in (1, 2):
        raise ValueError(f"y: expected (n,) labels or an (n, e) array, got shape {y.shape}")
    if len(x) != len(y):
        raise ValueError(f"x, y: expected the same number of samples, got {len(x)} and {len(y)}")
    if len(x) < MIN_SAMPLES:
        raise ValueError(f"x: expected at least {MIN_SAMPLES} samples, got {len(x)}")
    x = x.reshape(len(x), -1).astype(np.float64)
    discrete = y.ndim == 1 and (np.issubdtype(y.dtype, np.integer) or y.dtype == bool)
    y = np.unique(y, return_inverse=True)[1].astype(np.int64) if discrete else y.reshape(len(y), -1).astype(np.float64)
    for name, a in (("x", x), ("y", y)):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name}: expected finite values, got NaN or inf")
    return x, y


def estimate_mi_detailed(x: Any, y: Any, method: str = "ksg", **kw: Any) -> MIEstimate:
    """I(x; y) in nats with its method, ceiling, sample size and notes."""
    if method not in METHODS:
        raise ValueError(f"method: expected one of {sorted(METHODS)}, got {method!r}")
    return METHODS[method](*prepare(x, y), **kw)


def estimate_mi(x: Any, y: Any, method: str = "ksg", **kw: Any) -> float:
    """I(x; y) in nats for continuous x (n, d) and continuous (n, e) or label (n,) y."""
    return estimate_mi_detailed(x, y, method, **kw).value


def half_sample_se(x: Any, y: Any, method: str = "ksg", n_subsamples: int = 20, seed: int = 0,
                   **kw: Any) -> float:
    """Standard error of `estimate_mi(x, y, method)` by half-sampling: the spread of the estimate over
    `n_subsamples` random halves of the images, drawn without replacement.

    For a statistic of variance σ²/n, a half drawn without replacement from the n images varies by
    σ²(2/n − 1/n) = σ²/n given the sample — the full estimate's own variance — so no rescaling is needed. A
    with-replacement bootstrap would duplicate images, and duplicates put k-NN distances at zero, which biases
    the k-NN estimators (ksg, latent) that the grid uses."""
    x, y = prepare(x, y)
    half = len(x) // 2
    if n_subsamples < 2 or half < MIN_SAMPLES:
        return float("nan")
    rng = np.random.default_rng(seed)
    draws = [METHODS[method](x[idx], y[idx], **kw).value
             for idx in (rng.choice(len(x), half, replace=False) for _ in range(n_subsamples))]
    return float(np.std(draws, ddof=1))


MI_COLUMNS = ["timestep", "layer", "mi_nats", "mi_se", "mi_ci_low", "mi_ci_high", "method", "ceiling"]


def label_mi_grid(features_by_key: Any, labels: Any = None, method: str = "latent", n_subsamples: int = 20,
                  seed: int = 0, **kw: Any) -> pd.DataFrame:
    """I(y; features) per (timestep, layer) of a FeatureBank (its pooled features and labels: the input every grid
    function takes) or of {(timestep, layer): features} with `labels` -> DataFrame(MI_COLUMNS), with a 95% interval
    mi ± 1.96 se from `half_sample_se` (NaN with n_subsamples < 2).

    Features are (n, D) per key; token features (n, N, D) are mean-pooled over patches first (the probe
    protocol of design.md).
    """
    if hasattr(features_by_key, "pooled"):  # a FeatureBank: all its rows (the mi method extracts no test split)
        features_by_key, labels = features_by_key.pooled, features_by_key.labels if labels is None else labels
    if labels is None:
        raise ValueError("labels: required with a dict of features (a FeatureBank brings its own)")
    rows = []
    for (timestep, layer), feats in features_by_key.items():
        feats = _as_numpy(feats)
        feats = feats.mean(axis=1) if feats.ndim == 3 else feats  # (n, D)
        est = estimate_mi_detailed(feats, labels, method, **kw)
        se = half_sample_se(feats, labels, method, n_subsamples, seed, **kw)
        rows.append({"timestep": timestep, "layer": layer, "mi_nats": est.value, "mi_se": se,
                     "mi_ci_low": est.value - CI_Z * se, "mi_ci_high": est.value + CI_Z * se, "method": method,
                     "ceiling": est.ceiling})
    return pd.DataFrame(rows, columns=MI_COLUMNS)
