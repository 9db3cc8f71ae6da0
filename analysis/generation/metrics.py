"""Distances between two feature sets (n, d) and (m, d): Fréchet distance, KID, k-NN precision / recall, and the
share of samples whose features lie beyond every real one's norm (what makes FD and KID explode).

They take features from any extractor; `analysis.generation.classifier` supplies a per-dataset domain
classifier's (not Inception's, so the numbers are not comparable with published FID / KID).
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy import linalg


def _as_2d(a, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2 or len(a) < 2:
        raise ValueError(f"{name}: expected an (n, d) array with n >= 2, got shape {a.shape}")
    return a


def _as_pair(a, b, names: tuple[str, str] = ("a", "b")) -> tuple[np.ndarray, np.ndarray]:
    """Both sets as (n, d) and (m, d) float64 arrays of one feature dimension d."""
    a, b = _as_2d(a, names[0]), _as_2d(b, names[1])
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"{names[0]}, {names[1]}: expected the same feature dimension, got {a.shape[1]} and "
                         f"{b.shape[1]}")
    return a, b


def frechet_distance(a, b) -> float:
    """||mu_a - mu_b||² + Tr(S_a + S_b - 2 (S_a S_b)^½) between Gaussians fitted to a (n, d) and b (m, d)."""
    a, b = _as_pair(a, b)
    mu_a, mu_b = a.mean(0), b.mean(0)  # (d,)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))  # (d, d)
    with warnings.catch_warnings():  # a singular product is detected below and regularised
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        root = linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(root).all():  # singular product: regularise as the reference FID code does
        offset = np.eye(len(cov_a)) * 1e-6
        root = linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    root = np.real(root)  # drops the numerical imaginary part of a PSD product's root
    return float(max(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root), 0.0))


def _unbiased_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² with the cubic polynomial kernel k(u, v) = (u·v / d + 1)³ (Bińkowski et al. 2018)."""
    d, n, m = x.shape[1], len(x), len(y)
    kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
    return float((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                 - 2 * kxy.mean())


def kernel_inception_distance(a, b, subsets: int = 50, subset_size: int = 1000, seed: int = 0) -> dict[str, float]:
    """KID-style MMD² over random subsets of both sets: mean, std and 95% interval of the subset estimates.

    Each subset holds at most half of each set, drawn without replacement (half-sampling, as `analysis.mi`'s
    `half_sample_se`): for a U-statistic of variance σ²/n a random half varies by σ²/n given the sample, so the
    subsets' spread is the full estimate's own. Subsets of a whole set would all be that set: no spread at all."""
    a, b = _as_2d(a, "a"), _as_2d(b, "b")
    size = min(subset_size, len(a) // 2, len(b) // 2)
    if size < 2:
        raise ValueError(f"kernel_inception_distance: expected at least 4 rows in each set, got {len(a)} and {len(b)}")
    rng = np.random.default_rng(seed)
    values = np.array([_unbiased_mmd2(a[rng.choice(len(a), size, replace=False)],
                                      b[rng.choice(len(b), size, replace=False)]) for _ in range(subsets)])
    low, high = np.percentile(values, [2.5, 97.5])
    return {"mean": float(values.mean()), "std": float(values.std()), "ci_low": float(low), "ci_high": float(high),
            "subsets": subsets, "subset_size": size}


def precision_recall(real, fake, k: int = 3) -> dict[str, float]:
    """k-NN manifold precision (fake inside the real manifold) and recall (real inside the fake manifold),
    Kynkäänniemi et al. 2019: a set's manifold is the union of balls reaching each point's k-th neighbour."""
    real, fake = torch.as_tensor(_as_2d(real, "real")), torch.as_tensor(_as_2d(fake, "fake"))
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"k: expected fewer than {min(len(real), len(fake))} (the smaller set's size), got {k}")

    def covered(ref: torch.Tensor, query: torch.Tensor) -> float:
        radii = torch.cdist(ref, ref).kthvalue(k + 1, dim=1).values  # (n_ref,) k-th neighbour, self excluded
        return float((torch.cdist(query, ref) <= radii).any(dim=1).double().mean())  # (n_query, n_ref) -> share

    return {"precision": covered(real, fake), "recall": covered(fake, real), "k": k}


def outside_fraction(real, fake) -> float:
    """Share of `fake` rows whose L2 norm exceeds every `real` row's: samples off the data's feature shell.

    A classifier's features grow without bound off the data manifold (saturated, high-contrast samples), and FD
    and KID, being moments, are then dominated by those few samples; this says how many there are."""
    real, fake = _as_pair(real, fake, ("real", "fake"))
    return float((np.linalg.norm(fake, axis=1) > np.linalg.norm(real, axis=1).max()).mean())
