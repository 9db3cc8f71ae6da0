"""I(x0; x_t) per diffusion timestep from a denoiser's error, by the I-MMSE relation.

Guo, Shamai & Verdú (2005): for y_γ = sqrt(γ) x0 + n, n ~ N(0, I), dI(x0; y_γ)/dγ = ½ mmse(γ), so
  I(x0; y_γ) = ½ ∫₀^γ mmse(γ') dγ',   mmse(γ) = E‖x0 − E[x0 | y_γ]‖² (summed over dimensions).
x_t = sqrt(ᾱ) x0 + sqrt(1 − ᾱ) ε is y_γ scaled by sqrt(1 − ᾱ), with γ = SNR(t) = ᾱ / (1 − ᾱ), so
I(x0; x_t) = I(x0; y_SNR(t)).

mmse(γ_t) is measured as the mean of ‖x0 − x0_hat‖² over the images (one fresh noise draw per image and
timestep), on `n_snr` timesteps evenly spaced in log-SNR plus the requested ones. The integral is the
trapezoid rule in log γ (dγ = γ d log γ), plus the tail from γ = 0 to the smallest γ, a trapezoid in γ with
mmse(0) = Σ Var(x0). Its 95% interval is a percentile bootstrap over the images (`bootstrap_interval`).

With an imperfect denoiser the error exceeds the MMSE and the curve is NOT an MI: the integral of the
mismatched error is I plus a relative entropy (Verdú 2010, "Mismatched estimation and relative entropy"),
an upper-bound-style estimate that shrinks to I as the denoiser approaches the Bayes one.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from aselect_core.diffusion import NoiseSchedule

Denoiser = Callable[[Tensor, Tensor], Tensor]
N_BOOT = 1000  # bootstrap resamples of the images for the 95% interval
IMMSE_COLUMNS = ["timestep", "snr", "mmse", "mi_nats", "mi_ci_low", "mi_ci_high", "image_passes"]


def _from_eps(schedule: NoiseSchedule, xt: Tensor, t: Tensor, out: Tensor) -> Tensor:
    return schedule.predict_x0(xt, t, out)


def _from_x0(schedule: NoiseSchedule, xt: Tensor, t: Tensor, out: Tensor) -> Tensor:
    return out


PREDICTIONS: dict[str, Callable[[NoiseSchedule, Tensor, Tensor, Tensor], Tensor]] = {"eps": _from_eps, "x0": _from_x0}


def log_snr_timesteps(schedule: NoiseSchedule, n_snr: int) -> np.ndarray:
    """Up to n_snr distinct timesteps whose log-SNR is closest to an even grid over the schedule's range."""
    log_snr = schedule.log_snr(torch.arange(schedule.num_timesteps)).numpy()  # (T,) decreasing in t
    targets = np.linspace(log_snr[-1], log_snr[0], n_snr)  # (n_snr,)
    return np.unique(np.abs(log_snr[None, :] - targets[:, None]).argmin(axis=1))


@torch.no_grad()
def image_errors(denoiser: Denoiser, x0: Tensor, schedule: NoiseSchedule, t: int, prediction: str,
                 batch_size: int, generator: torch.Generator) -> np.ndarray:
    """(n,) ‖x0 − x0_hat‖² of each image (summed over dimensions) at timestep t, one fresh noise draw each."""
    errors = []
    for batch in x0.split(batch_size):
        tt = torch.full((len(batch),), t, dtype=torch.long, device=batch.device)
        noise = torch.randn(batch.shape, generator=generator, dtype=batch.dtype).to(batch.device)
        xt = schedule.q_sample(batch, tt, noise)
        x0_hat = PREDICTIONS[prediction](schedule, xt, tt, denoiser(xt, tt))
        errors.append((batch - x0_hat).double().pow(2).flatten(1).sum(dim=1).cpu())  # (B,)
    return torch.cat(errors).numpy()


def power_law_segments(snr: np.ndarray, mmse: np.ndarray) -> np.ndarray:
    """(K,), (..., K) -> (..., K-1) ∫ mmse dγ between neighbouring SNRs, mmse interpolated as a power law in γ.

    This is the trapezoid in log γ (dγ = γ d log γ) made exact at both ends of the range: a constant mmse
    (low SNR, where a schedule's last step can jump by decades of SNR) and mmse ∝ 1/γ (high SNR).
    """
    span = np.diff(np.log(snr))  # (K-1,) log(γ_b / γ_a)
    q = span + np.diff(np.log(mmse), axis=-1)  # (..., K-1) (p + 1) · span, p the local power
    growth = np.where(np.abs(q) > 1e-12, np.expm1(q) / np.where(q == 0, 1.0, q), 1.0)  # expm1(q)/q -> 1
    return mmse[..., :-1] * snr[:-1] * span * growth


def immse_integral(snr: np.ndarray, mmse: np.ndarray, mmse0: float | np.ndarray) -> np.ndarray:
    """(K,) increasing SNRs, (..., K) their mmse, (...) mmse(0) -> (..., K) I = ½ ∫₀^γ mmse, plus the γ→0 tail
    (trapezoid in γ); leading axes are independent curves (bootstrap draws)."""
    tail = 0.5 * snr[0] * (np.asarray(mmse0) + mmse[..., 0]) / 2  # (...)
    cumulative = np.cumsum(power_law_segments(snr, mmse), axis=-1)  # (..., K-1)
    return 0.5 * np.concatenate([np.zeros_like(cumulative[..., :1]), cumulative], axis=-1) + tail[..., None]


def bootstrap_interval(snr: np.ndarray, errors: np.ndarray, x0: np.ndarray, n_boot: int,
                       seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(K,) SNRs, (K, n) per-image errors, (n, D) images -> the (K,) 2.5% and 97.5% percentiles of the I-MMSE
    curve over `n_boot` resamples of the images (with replacement), each image keeping its errors at every γ and
    its share of mmse(0) = Σ Var(x0)."""
    n = errors.shape[1]
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n, np.full(n, 1 / n), size=n_boot) / n  # (B, n) resampling weights
    mmse = weights @ errors.T  # (B, K)
    factor = np.linalg.qr(x0.T, mode="r").T  # (n, min(n, D)): factor factorᵀ = x0 x0ᵀ, so the same weighted norms
    mmse0 = weights @ np.square(factor).sum(axis=1) - np.square(weights @ factor).sum(axis=1)  # (B,) Σ_d Var
    low, high = np.percentile(immse_integral(snr, mmse, mmse0), [2.5, 97.5], axis=0)  # (K,) each
    return low, high


def mi_x0_xt(denoiser: Denoiser, x0: Tensor, schedule: NoiseSchedule, timesteps: list[int] | None = None,
             n_snr: int = 64, prediction: str = "eps", batch_size: int = 256, seed: int = 0,
             n_boot: int = N_BOOT) -> pd.DataFrame:
    """I(x0; x_t) in nats per timestep -> DataFrame(IMMSE_COLUMNS): timestep, snr, mmse, mi_nats, its 95%
    interval mi_ci_low / mi_ci_high, image_passes.

    denoiser(x_t (B, ...), t (B,)) returns eps_hat (prediction="eps") or x0_hat (prediction="x0"); wrap a
    DiT as `lambda x, t: model(x, t, None)[:, :C]` (null class, first C channels when it learns sigma).
    `timesteps` defaults to the log-SNR grid itself; `image_passes` is the total count of denoiser image
    evaluations spent on the whole curve.

    The interval is a percentile bootstrap over images (`bootstrap_interval`, `n_boot` resamples; NaN with
    n_boot = 0) rather than a standard error propagated through the integral: an image's errors at different
    timesteps are correlated (the same x0 is hard at every γ), which a per-timestep standard error would miss
    without the full K × K covariance; the integral is nonlinear in the mmse (power-law interpolation in
    log mmse); and percentiles of a positive curve stay positive, as the log axis it is drawn on needs. It
    covers the image sample and the noise draws, not a denoiser's mismatch (the bias above).
    """
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction: expected one of {sorted(PREDICTIONS)}, got {prediction!r}")
    if n_snr < 2:
        raise ValueError(f"n_snr: expected at least 2 grid points, got {n_snr}")
    if n_boot == 1 or n_boot < 0:
        raise ValueError(f"n_boot: expected 0 (no interval) or at least 2 resamples, got {n_boot}")
    if x0.dim() < 2 or len(x0) < 2:
        raise ValueError(f"x0: expected a batch (n >= 2, ...) of samples, got shape {tuple(x0.shape)}")
    requested = log_snr_timesteps(schedule, n_snr) if timesteps is None else np.asarray(timesteps, dtype=np.int64)
    if requested.size == 0 or requested.min() < 0 or requested.max() >= schedule.num_timesteps:
        raise ValueError(f"timesteps: expected integers in [0, {schedule.num_timesteps}), got {requested.tolist()}")
    grid = np.union1d(log_snr_timesteps(schedule, n_snr), requested)[::-1].copy()  # (K,) t descending = γ ascending
    generator = torch.Generator().manual_seed(seed)
    errors = np.stack([image_errors(denoiser, x0, schedule, int(t), prediction, batch_size, generator)
                       for t in grid])  # (K, n)
    snr = schedule.snr(torch.from_numpy(grid)).numpy()  # (K,) increasing
    images = x0.double().flatten(1).cpu().numpy()  # (n, D)
    mmse = errors.mean(axis=1)  # (K,)
    mi = immse_integral(snr, mmse, images.var(axis=0).sum())
    low, high = bootstrap_interval(snr, errors, images, n_boot, seed) if n_boot else (np.nan, np.nan)
    frame = pd.DataFrame({"timestep": grid, "snr": snr, "mmse": mmse, "mi_nats": mi, "mi_ci_low": low,
                          "mi_ci_high": high, "image_passes": len(grid) * len(x0)}, columns=IMMSE_COLUMNS)
    return frame[frame.timestep.isin(requested)].sort_values("timestep").reset_index(drop=True)
