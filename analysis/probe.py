"""Probes of frozen features: linear (logistic regression), k-NN, raw-pixel baseline, per-patch segmentation.

The probe protocol (shared/design.md): features of the null class, mean-pooled over patches (or flattened
tokens), standardised with the train split's statistics, a multinomial logistic regression fitted on the train
split, reported on a held-out test split of different images. The L2 strength C is chosen on a validation split
carved (stratified, seeded) from the train split, so the test split is never looked at while fitting.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits
from torch import Tensor

from aselect_core.diffusion import as_time
from aselect_core.model.layer_key import LayerKey

DEFAULT_CS = (0.01, 0.1, 1.0)
GRID_COLUMNS = ["timestep", "layer", "kind", "depth", "accuracy", "accuracy_ci_low", "accuracy_ci_high",
                "cross_entropy", "knn_accuracy", "knn_ci_low", "knn_ci_high", "n_train", "n_test", "pooling", "C"]
CI_Z = 1.959963984540054  # two-sided 95% normal quantile


@dataclass
class ProbeResult:
    """Held-out accuracy and cross-entropy (nats) of a linear probe, and the C chosen on validation."""

    accuracy: float
    cross_entropy: float
    C: float
    n_train: int
    n_test: int
    val_accuracy: dict[float, float] = field(default_factory=dict)  # C -> validation accuracy
    test_pred: np.ndarray | None = None  # (n_test,) predicted classes
    probe: "FittedProbe | None" = None  # the final fit (on all of train, at C), e.g. for attribution maps


def _numpy(x: Tensor | np.ndarray) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)


def feature_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std of (n, D) rows, a constant feature's std 1 (so it is only centred)."""
    std = x.std(axis=0)
    return x.mean(axis=0), np.where(std > 1e-8, std, 1.0)


def standardise(train_x: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Centre and scale every array by the train split's per-feature mean and std (constant features -> 0)."""
    mean, std = feature_stats(train_x)
    return [((x - mean) / std).astype(np.float32) for x in (train_x, *others)]


def _fit(x: np.ndarray, y: np.ndarray, C: float, max_iter: int, tol: float,
         model: LogisticRegression | None = None) -> LogisticRegression:
    """Fit lbfgs at strength C; pass the previous `model` to warm-start from its solution (a path over C).

    BLAS runs on one thread here: these matrices are small (~1,000 × a few hundred), and thread start-up costs
    more than it saves (measured: 0.20 s per probe with 2 threads, 0.06 s with 1, on this 2-core machine).
    """
    model = model or LogisticRegression(warm_start=True)
    model.set_params(C=C, max_iter=max_iter, tol=tol)
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore", ConvergenceWarning)  # a capped lbfgs is still a fine probe
        return model.fit(x, y)


@dataclass(frozen=True)
class FittedProbe:
    """A logistic regression on features standardised by the train split's per-feature mean and std."""

    model: LogisticRegression
    mean: np.ndarray  # (D,)
    std: np.ndarray  # (D,), constant features: 1

    def transform(self, x: np.ndarray) -> np.ndarray:
        """(n, D) raw features -> (n, D) standardised float32, as the model was fitted on."""
        return ((x - self.mean) / self.std).astype(np.float32)


def fit_probe(x: np.ndarray, y: np.ndarray, C: float = 1.0, max_iter: int = 200, tol: float = 1e-3) -> FittedProbe:
    """The one probe fit of the workbench (grid, MI probe bound, attribution): standardise x (n, D) by its own
    statistics, then a multinomial logistic regression at strength C (lbfgs, one BLAS thread)."""
    probe = FittedProbe(LogisticRegression(), *feature_stats(x))
    _fit(probe.transform(x), y, C, max_iter, tol, probe.model)
    return probe


def cross_entropy(model: LogisticRegression, x: np.ndarray, y: np.ndarray, eps: float = 1e-12) -> float:
    """Mean -log p(y | x) in nats; a class the model never saw in training gets probability eps."""
    proba = model.predict_proba(x)  # (n, classes seen in training)
    col = {c: i for i, c in enumerate(model.classes_)}
    p = np.array([proba[i, col[c]] if c in col else 0.0 for i, c in enumerate(y)])
    return float(-np.log(np.clip(p, eps, 1.0)).mean())


def _validation_split(y: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (when every class has 2+ rows) seeded split of row indices into fit and validation parts."""
    idx = np.arange(len(y))
    counts = np.bincount(y)
    stratify = y if counts[counts > 0].min() >= 2 and len(np.unique(y)) <= val_fraction * len(y) else None
    return train_test_split(idx, test_size=val_fraction, random_state=seed, stratify=stratify)


def linear_probe(train_x: Tensor | np.ndarray, train_y: Tensor | np.ndarray, test_x: Tensor | np.ndarray,
                 test_y: Tensor | np.ndarray, Cs: tuple[float, ...] = DEFAULT_CS, val_fraction: float = 0.2,
                 seed: int = 0, max_iter: int = 200, tol: float = 1e-3) -> ProbeResult:
    """Standardised multinomial logistic regression; C picked by validation accuracy (ties: validation
    cross-entropy), then refit on all of train and scored on the test split.

    The validation fits walk the C grid from strong to weak regularisation, each warm-started from the last;
    tol=1e-3 (sklearn's default is 1e-4) keeps a 240-cell grid within minutes at no visible cost in accuracy.
    """
    train_x, test_x = _numpy(train_x).reshape(len(train_y), -1), _numpy(test_x).reshape(len(test_y), -1)
    train_y, test_y = _numpy(train_y).astype(np.int64), _numpy(test_y).astype(np.int64)
    if len(np.unique(train_y)) < 2:
        raise ValueError(f"train_y: expected at least 2 classes, got {np.unique(train_y).tolist()}")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction: expected a float in (0, 1), got {val_fraction}")
    fit_idx, val_idx = _validation_split(train_y, val_fraction, seed)
    fit_x, val_x = standardise(train_x[fit_idx], train_x[val_idx])
    val_accuracy, val_ce, path = {}, {}, None
    for C in sorted(Cs):
        path = _fit(fit_x, train_y[fit_idx], C, max_iter, tol, path)
        val_accuracy[C] = float(path.score(val_x, train_y[val_idx]))
        val_ce[C] = cross_entropy(path, val_x, train_y[val_idx])
    best = max(Cs, key=lambda c: (val_accuracy[c], -val_ce[c]))  # accuracy ties -> the better calibrated
    probe = fit_probe(train_x, train_y, best, max_iter, tol)
    model, te_x = probe.model, probe.transform(test_x)
    return ProbeResult(accuracy=float(model.score(te_x, test_y)), cross_entropy=cross_entropy(model, te_x, test_y),
                       C=best, n_train=len(train_y), n_test=len(test_y), val_accuracy=val_accuracy,
                       test_pred=model.predict(te_x), probe=probe)


def knn_accuracy(train_x: Tensor | np.ndarray, train_y: Tensor | np.ndarray, test_x: Tensor | np.ndarray,
                 test_y: Tensor | np.ndarray, k: int = 20, temperature: float = 0.07) -> float:
    """Cosine k-NN accuracy, votes weighted by exp(sim / temperature) as in Wu et al. (2018) and DINO."""
    tr = torch.nn.functional.normalize(torch.as_tensor(_numpy(train_x)).flatten(1).double(), dim=1)  # (n, d)
    te = torch.nn.functional.normalize(torch.as_tensor(_numpy(test_x)).flatten(1).double(), dim=1)  # (m, d)
    ytr = torch.as_tensor(_numpy(train_y)).long()
    yte = torch.as_tensor(_numpy(test_y)).long()
    sim, nn = (te @ tr.T).topk(min(k, len(ytr)), dim=1)  # (m, k)
    votes = torch.zeros(len(yte), int(max(ytr.max(), yte.max())) + 1, dtype=torch.float64)  # (m, classes)
    votes.scatter_add_(1, ytr[nn], (sim / temperature).exp())
    return float((votes.argmax(dim=1) == yte).double().mean())


# -- pooling of token maps -------------------------------------------------------------------------------------
def grid_pool(tokens: Tensor, cells: int) -> Tensor:
    """(n, N, D) tokens of a square g×g patch grid -> (n, cells²·D): the mean of each of cells × cells regions, so
    the probe keeps where in the image a feature sits (as flattened pixels do) at a fraction of flatten's width."""
    n, N, D = tokens.shape
    g = math.isqrt(N)
    if g * g != N or g % cells:
        raise ValueError(f"tokens: grid pooling to {cells}×{cells} needs a square patch grid divisible by {cells}, "
                         f"got {N} tokens")
    grid = tokens.reshape(n, g, g, D).permute(0, 3, 1, 2)  # (n, D, g, g)
    return torch.nn.functional.avg_pool2d(grid, g // cells).flatten(1)  # (n, D·cells²)


POOLINGS: dict[str, Callable[[Tensor], Tensor]] = {
    "mean": lambda tokens: tokens.mean(dim=1),  # (n, N, D) -> (n, D)
    "grid2": lambda tokens: grid_pool(tokens, 2),  # (n, N, D) -> (n, 4·D): a 2×2 layout of region means
    "grid4": lambda tokens: grid_pool(tokens, 4),  # (n, N, D) -> (n, 16·D)
    "flatten": lambda tokens: tokens.flatten(1),  # (n, N, D) -> (n, N·D)
}


def _check_pooling(pooling: str) -> None:
    if pooling not in POOLINGS:
        raise ValueError(f"pooling: expected one of {sorted(POOLINGS)}, got {pooling!r}")


def wilson_interval(accuracy: float, n: int, z: float = CI_Z) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (accuracy over n test images); 95% by default.

    Unlike the normal approximation it stays inside [0, 1] and is honest at 0% or 100% on small test sets.
    """
    if n < 1:
        return float("nan"), float("nan")
    centre = (accuracy + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(accuracy * (1 - accuracy) / n + z * z / (4 * n * n))
    # the interval always holds the estimate; min/max only undo rounding (at 0% or 100% it lands a ulp inside)
    return float(max(0.0, min(accuracy, centre - half))), float(min(1.0, max(accuracy, centre + half)))


def probe_row(timestep: int | float, layer: str, train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor,
              pooling: str, knn: bool, **probe_kw) -> dict:
    """One row of a probe grid: linear probe (+ k-NN) on already pooled (n, d) features."""
    res = linear_probe(train_x, train_y, test_x, test_y, **probe_kw)
    key = LayerKey.parse(layer)
    low, high = wilson_interval(res.accuracy, res.n_test)
    knn_acc = knn_accuracy(train_x, train_y, test_x, test_y) if knn else float("nan")
    knn_low, knn_high = wilson_interval(knn_acc, res.n_test) if knn else (float("nan"), float("nan"))
    return {"timestep": as_time(timestep), "layer": layer, "kind": key.kind, "depth": key.index,
            "accuracy": res.accuracy, "accuracy_ci_low": low, "accuracy_ci_high": high, "cross_entropy": res.cross_entropy,
            "knn_accuracy": knn_acc, "knn_ci_low": knn_low, "knn_ci_high": knn_high,
            "n_train": res.n_train, "n_test": res.n_test, "pooling": pooling, "C": res.C}


def best_cell(grid: pd.DataFrame) -> dict[str, Any]:
    """The most accurate cell of a probe grid with its 95% CI, and whether the runner-up lies inside that CI
    (then the grid cannot tell the two apart on this test set). A grid written before CIs gets Wilson's from n_test."""
    ranked = grid.sort_values("accuracy", ascending=False, kind="stable")
    best = ranked.iloc[0]
    runner_up = ranked.iloc[1] if len(ranked) > 1 else None
    low, high = ((best.accuracy_ci_low, best.accuracy_ci_high) if "accuracy_ci_low" in grid
                 else wilson_interval(best.accuracy, int(best.n_test)))
    return {"timestep": as_time(best.timestep), "layer": best.layer, "accuracy": float(best.accuracy),
            "accuracy_ci_low": finite_or_none(float(low)), "accuracy_ci_high": finite_or_none(float(high)),
            "runner_up": None if runner_up is None else {
                "timestep": as_time(runner_up.timestep), "layer": runner_up.layer,
                "accuracy": float(runner_up.accuracy),
                "within_ci": bool(runner_up.accuracy >= low)}}


def finite_or_none(x: Any) -> float | None:
    """x when it is a finite number, else None (JSON has no NaN)."""
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


def probe_grid(bank, pooling: str = "mean", knn: bool = True, progress: bool = False, **probe_kw) -> pd.DataFrame:
    """Probe every (timestep, layer) of a FeatureBank -> DataFrame with GRID_COLUMNS, one row per cell.

    pooling="mean" uses the bank's pooled vectors; the others ("grid2", "grid4": region means on a 2×2 / 4×4
    layout; "flatten": every token) need a bank extracted with tokens=True.
    """
    from tqdm.auto import tqdm

    _check_pooling(pooling)
    if pooling != "mean" and bank.tokens is None:
        raise ValueError(f"pooling: {pooling!r} needs token maps; extract the bank with tokens=True")
    if bank.n_test == 0:
        raise ValueError("bank: has no test split; extract it with n_test > 0 to probe")
    tr, te = bank.split_mask("train"), bank.split_mask("test")
    rows = []
    for key in tqdm(bank.keys(), desc=f"probe ({pooling})", disable=not progress, dynamic_ncols=True):
        x = bank.pooled[key] if pooling == "mean" else POOLINGS[pooling](bank.tokens[key])  # (n, d)
        rows.append(probe_row(key[0], key[1], x[tr], bank.labels[tr], x[te], bank.labels[te], pooling, knn,
                              **probe_kw))
    return pd.DataFrame(rows, columns=GRID_COLUMNS)


def pixel_baseline(splits, timesteps: tuple[int, ...] = (0,), schedule=None, knn: bool = True,
                   **probe_kw) -> pd.DataFrame:
    """The same probe on flattened pixels of x_t (same images, splits and per-image noise as the features).

    `splits` is a `analysis.features.ProbeSplits`; with timesteps=(0,) and no schedule these are the clean
    images. Rows have layer = kind = "pixels", pooling = "flatten".
    """
    rows = []
    for t in timesteps:
        train_x = splits.noisy("train", t, schedule)  # (n, C, H, W)
        test_x = splits.noisy("test", t, schedule)
        rows.append(probe_row(t, "pixels", train_x.flatten(1), splits.train.labels, test_x.flatten(1),
                              splits.test.labels, "flatten", knn, **probe_kw))
    return pd.DataFrame(rows, columns=GRID_COLUMNS)


# -- per-patch segmentation --------------------------------------------------------------------------------------
def patch_labels(masks: Tensor, grid: tuple[int, int]) -> Tensor:
    """Masks (n, H, W) -> (n, h·w) majority class of each patch, row-major like the tokens (ties -> lower class)."""
    n, H, W = masks.shape
    h, w = grid
    if H % h or W % w:
        raise ValueError(f"grid: expected a patch grid dividing the {H}x{W} masks, got {grid}")
    patches = masks.reshape(n, h, H // h, w, W // w).permute(0, 1, 3, 2, 4).reshape(n, h * w, -1)  # (n, hw, p²)
    classes = int(masks.max()) + 1
    counts = torch.nn.functional.one_hot(patches, classes).sum(dim=2)  # (n, hw, classes)
    return counts.argmax(dim=2)


def mean_iou(pred: Tensor | np.ndarray, target: Tensor | np.ndarray) -> float:
    """Mean over classes present in prediction or target of |pred ∩ target| / |pred ∪ target|."""
    pred, target = torch.as_tensor(_numpy(pred)).flatten(), torch.as_tensor(_numpy(target)).flatten()
    ious = []
    for c in torch.unique(torch.cat([pred, target])):
        inter = ((pred == c) & (target == c)).sum().item()
        union = ((pred == c) | (target == c)).sum().item()
        ious.append(inter / union)
    return float(np.mean(ious))


def segmentation_probe(train_tokens: Tensor, train_masks: Tensor, test_tokens: Tensor, test_masks: Tensor,
                       grid: tuple[int, int], max_train_patches: int = 20_000, seed: int = 0,
                       **probe_kw) -> dict[str, Any]:
    """Linear probe from each token (n, N, D) to its patch's majority mask class; returns patch mIoU, accuracy,
    the C chosen and the test predictions `test_pred` (n_test, N).

    At most `max_train_patches` (seeded sample) train tokens are fitted, to keep the grid fast.
    """
    D = train_tokens.shape[-1]
    tr_x, tr_y = train_tokens.reshape(-1, D), patch_labels(train_masks, grid).flatten()  # (n·N, D), (n·N,)
    te_x, te_y = test_tokens.reshape(-1, D), patch_labels(test_masks, grid).flatten()
    if len(tr_y) > max_train_patches:
        keep = torch.randperm(len(tr_y), generator=torch.Generator().manual_seed(seed))[:max_train_patches]
        tr_x, tr_y = tr_x[keep], tr_y[keep]
    res = linear_probe(tr_x, tr_y, te_x, te_y, seed=seed, **probe_kw)
    return {"miou": mean_iou(res.test_pred, te_y), "patch_accuracy": res.accuracy, "C": res.C,
            "test_pred": res.test_pred.reshape(test_tokens.shape[:2])}
