"""Probe bound on I(x; y) for labels y: I ≥ H(Y) − CE, CE the held-out cross-entropy of a classifier q(y|x).

The Barber & Agakov (2003) variational bound: any q gives E[log q(y|x)] ≤ E[log p(y|x)], so H(Y) minus the
held-out cross-entropy is a lower bound up to sampling error, tight when q is the true posterior (e.g. a
multinomial logistic regression on a Gaussian mixture with a shared covariance). k-fold cross-fitting
(default 2 folds, i.e. 50/50 both ways) holds every sample out once. The ceiling is H(Y).
"""
from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedKFold

from analysis.mi.base import MIEstimate, is_discrete, label_entropy
from analysis.probe import fit_probe


def heldout_log_likelihood(x: np.ndarray, labels: np.ndarray, folds: int, C: float, seed: int) -> np.ndarray:
    """(n,) log q(y_i | x_i) of each sample under a logistic regression fitted on the other folds."""
    loglik = np.empty(len(x))
    for train, test in StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(x, labels):
        probe = fit_probe(x[train], labels[train], C, max_iter=2000, tol=1e-4)  # converged: a bound, not a grid
        proba = probe.model.predict_proba(probe.transform(x[test]))  # (m, K) over the classes seen in training
        column = np.searchsorted(probe.model.classes_, labels[test])
        loglik[test] = np.log(np.clip(proba[np.arange(len(test)), column], 1e-12, None))
    return loglik


def probe_mi(x: np.ndarray, y: np.ndarray, folds: int = 2, C: float = 1.0, seed: int = 0) -> MIEstimate:
    """H(Y) − held-out cross-entropy of a standardised multinomial logistic regression, in nats."""
    if not is_discrete(y):
        raise ValueError("y: method 'probe' expects integer labels (n,); for continuous y use 'ksg' or 'gaussian'")
    smallest = int(np.bincount(y).min())
    if folds < 2 or smallest < folds:
        raise ValueError(f"folds: expected 2 <= folds <= the smallest class size {smallest}, got {folds}")
    entropy = label_entropy(y)
    value = entropy + float(heldout_log_likelihood(x, y, folds, C, seed).mean())
    return MIEstimate(value, "probe", entropy, len(x), x.shape[1], f"logistic probe, {folds}-fold, C={C:g}")
