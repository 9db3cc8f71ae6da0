"""Shared pieces of the MI estimators: the result record and the input conventions they rely on.

Estimators receive validated numpy arrays: x float64 (n, d); y either float64 (n, e) (continuous) or int64
(n,) class codes 0..K-1 (discrete). A 1-D y therefore always means labels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from analysis.probe import feature_stats


@dataclass(frozen=True)
class MIEstimate:
    """One MI estimate in nats, with what bounds it: `ceiling` is the most the estimator can ever report
    (log batch for InfoNCE, H(Y) for the probe bound), inf when it has none."""

    value: float
    method: str
    ceiling: float
    n: int
    d: int
    notes: str = ""


def is_discrete(y: np.ndarray) -> bool:
    """True for (n,) class codes, False for (n, e) continuous values."""
    return y.ndim == 1


def standardise(a: np.ndarray) -> np.ndarray:
    """(n, d) -> (n, d) with zero mean and unit variance per column; constant columns are only centred."""
    mean, std = feature_stats(a)
    return (a - mean) / std


def label_entropy(y: np.ndarray) -> float:
    """Plug-in entropy H(Y) in nats of (n,) class codes."""
    p = np.bincount(y) / len(y)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def no_ceiling() -> float:
    """The ceiling of an estimator that has none."""
    return math.inf
