"""What a timestep-selection policy learned: its p(t) snapshots over training, their spread and how they move.

Inputs are the run dir's long-format tables (written by `aselect_core.train`):
- `curriculum.parquet`: step, bin, t_lo, t_hi (inclusive), probability (sums to 1 per step), ...
- `curriculum_classes.parquet` (policies whose p(t) depends on the image, e.g. `learned`): the same per label,
  columns step, label, bin, t_lo, t_hi, probability.

Spread: the entropy H of a snapshot over its bins gives `effective_bins = exp(H)` (K for uniform over K bins,
1 for a point mass). `effective_timesteps` spreads each bin's mass uniformly over its width w_b:
exp(H + Σ_b p_b log w_b) — exact for a p(t) constant within bins, an upper bound otherwise (grouping can only
lose entropy), and equal to the trainer's own per-timestep `effective_timesteps` for piecewise-uniform policies.

Divergence: KL(p‖q) = Σ p log(p / q) in nats, with 0·log 0 = 0. A policy may put zero mass where another does
not (e.g. `fixed`), which makes KL infinite; q is therefore smoothed to (q + ε) / (1 + K·ε) with ε = `EPS`
(1e-6 by default), so KL stays finite and is bounded by log((1 + K·ε) / ε) ≈ 13.8 nats for K = 50.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.frames import require_columns
from aselect_core.train.rundir import RunDir, RunDirError

EPS = 1e-6
COLUMNS = ("step", "bin", "t_lo", "t_hi", "probability")
CLASS_COLUMNS = ("step", "label", "bin", "t_lo", "t_hi", "probability")
CLASS_FILE = "curriculum_classes.parquet"



def load_curriculum(run: str | Path) -> pd.DataFrame:
    """The run's curriculum.parquet (step, bin, t_lo, t_hi, probability, ...) sorted by step and bin."""
    df = require_columns(RunDir(Path(run)).curriculum(), COLUMNS, f"{Path(run) / 'curriculum.parquet'}")
    return df.sort_values(["step", "bin"], ignore_index=True)


def load_class_curriculum(run: str | Path) -> pd.DataFrame | None:
    """The run's per-class p(t | y) snapshots (curriculum_classes.parquet), or None when the run has none."""
    path = Path(run) / CLASS_FILE
    if not path.is_file():
        return None
    try:
        df = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for a corrupt file
        raise RunDirError(f"{path}: not a readable parquet file ({type(e).__name__})") from None
    return require_columns(df, CLASS_COLUMNS, str(path)).sort_values(["step", "label", "bin"], ignore_index=True)


def bin_table(curriculum: pd.DataFrame) -> pd.DataFrame:
    """One row per bin: bin, t_lo, t_hi, width (timesteps), t_mid; the bins must be the same at every step."""
    require_columns(curriculum, COLUMNS, "curriculum")
    bins = curriculum[["bin", "t_lo", "t_hi"]].drop_duplicates().sort_values("bin", ignore_index=True)
    if bins.bin.duplicated().any():
        raise ValueError("curriculum: a bin has different timestep edges at different steps")
    return bins.assign(width=bins.t_hi - bins.t_lo + 1, t_mid=(bins.t_lo + bins.t_hi) / 2)


def marginal_matrix(curriculum: pd.DataFrame) -> pd.DataFrame:
    """p(t) over training as a (step × bin) matrix: index step, columns bin; missing cells are 0."""
    require_columns(curriculum, COLUMNS, "curriculum")
    return curriculum.pivot_table(index="step", columns="bin", values="probability", aggfunc="sum", fill_value=0.0)


def entropy(p: np.ndarray) -> float:
    """Shannon entropy in nats of a probability vector (0·log 0 = 0)."""
    p = np.asarray(p, dtype=np.float64)
    nz = p[p > 0]
    return float(-(nz * np.log(nz)).sum())


def spread(curriculum: pd.DataFrame) -> pd.DataFrame:
    """Per snapshot: step, entropy_nats (over bins), effective_bins = exp(H), effective_timesteps (module doc)."""
    m = marginal_matrix(curriculum)
    log_w = np.log(bin_table(curriculum).set_index("bin").width.reindex(m.columns).to_numpy(np.float64))
    h = np.array([entropy(row) for row in m.to_numpy()])
    return pd.DataFrame({"step": m.index.to_numpy(), "entropy_nats": h, "effective_bins": np.exp(h),
                         "effective_timesteps": np.exp(h + m.to_numpy() @ log_w)})


def kl_divergence(p: np.ndarray, q: np.ndarray, eps: float = EPS) -> float:
    """KL(p‖q) in nats with q smoothed by eps (module doc); p and q are renormalised to sum to 1."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if p.shape != q.shape or p.ndim != 1:
        raise ValueError(f"p, q: expected two vectors of the same length, got shapes {p.shape} and {q.shape}")
    if (p < 0).any() or (q < 0).any() or p.sum() <= 0 or q.sum() <= 0:
        raise ValueError("p, q: expected non-negative vectors with positive mass")
    p, q = p / p.sum(), q / q.sum()
    q = (q + eps) / (1 + len(q) * eps)
    nz = p > 0
    return float((p[nz] * np.log(p[nz] / q[nz])).sum())


def snapshot(curriculum: pd.DataFrame, step: int | None = None) -> pd.Series:
    """p over bins at `step` (None = the last snapshot), indexed by bin."""
    m = marginal_matrix(curriculum)
    step = int(m.index.max()) if step is None else step
    if step not in m.index:
        raise ValueError(f"step: expected one of the snapshot steps {m.index.tolist()}, got {step}")
    return m.loc[step]


def policy_kl(a: pd.DataFrame, b: pd.DataFrame, step_a: int | None = None, step_b: int | None = None,
              eps: float = EPS) -> float:
    """KL(p_a‖p_b) between two runs' snapshots (None = each run's last), aligned on identical bins."""
    if not bin_table(a)[["bin", "t_lo", "t_hi"]].equals(bin_table(b)[["bin", "t_lo", "t_hi"]]):
        raise ValueError("b: expected the same timestep bins as a (re-run with the same curriculum_bins)")
    return kl_divergence(snapshot(a, step_a).to_numpy(), snapshot(b, step_b).to_numpy(), eps)


def training_kl(curriculum: pd.DataFrame, eps: float = EPS) -> pd.DataFrame:
    """How far p(t) moved between consecutive snapshots: step_from, step, kl_nats = KL(p_step‖p_step_from)."""
    m = marginal_matrix(curriculum)
    rows = m.to_numpy()
    return pd.DataFrame({"step_from": m.index[:-1].to_numpy(), "step": m.index[1:].to_numpy(),
                         "kl_nats": [kl_divergence(p, q, eps) for q, p in zip(rows[:-1], rows[1:])]})


def class_matrix(classes: pd.DataFrame | None, step: int | None = None) -> pd.DataFrame | None:
    """p(t | y) at `step` (None = last) as a (label × bin) matrix; None when there is no per-class table."""
    if classes is None:
        return None
    require_columns(classes, CLASS_COLUMNS, "classes")
    step = int(classes.step.max()) if step is None else step
    at = classes[classes.step == step]
    if at.empty:
        raise ValueError(f"step: expected one of the snapshot steps {sorted(classes.step.unique())}, got {step}")
    return at.pivot_table(index="label", columns="bin", values="probability", aggfunc="sum", fill_value=0.0)
