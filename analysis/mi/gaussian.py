"""Gaussian MI: the closed form for jointly Gaussian (x, y), ½ log(det Σx · det Σy / det Σxy).

Exact for Gaussians and, for any distribution with the same covariance, a lower bound on I(x; y)
(the Gaussian maximises entropy for a given covariance; Cover & Thomas 2006, Thm 8.6.5). Columns are
standardised and a small ridge keeps rank-deficient covariances finite.
"""
from __future__ import annotations

import numpy as np

from analysis.mi.base import MIEstimate, is_discrete, no_ceiling, standardise


def _logdet(cov: np.ndarray) -> float:
    """log det of a symmetric positive-definite matrix."""
    return float(np.linalg.slogdet(cov)[1])


def gaussian_mi(x: np.ndarray, y: np.ndarray, ridge: float = 1e-6) -> MIEstimate:
    """½ log(det Σx det Σy / det Σxy) for continuous x (n, d) and y (n, e), in nats."""
    if is_discrete(y):
        raise ValueError("y: method 'gaussian' expects continuous y (n, e); for labels use 'ksg', 'probe' or 'latent'")
    d = x.shape[1]
    z = standardise(np.hstack([x, y]))  # (n, d + e)
    cov = np.cov(z, rowvar=False) + ridge * np.eye(z.shape[1])  # (d + e, d + e)
    value = 0.5 * (_logdet(cov[:d, :d]) + _logdet(cov[d:, d:]) - _logdet(cov))
    return MIEstimate(value, "gaussian", no_ceiling(), len(x), d, f"Gaussian closed form, ridge={ridge:g}")
