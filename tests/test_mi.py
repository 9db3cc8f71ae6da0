"""MI estimators and the I-MMSE curve against closed forms (correlated Gaussians, Gaussian mixtures)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.special import logsumexp

from analysis.mi import (IMMSE_COLUMNS, MI_COLUMNS, estimate_mi, estimate_mi_detailed, half_sample_se,
                         label_mi_grid, mi_x0_xt)
from aselect_core.diffusion import NoiseSchedule


def correlated(n: int, d: int, rho: float, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """x, y (n, d) with per-dimension correlation rho; I = −d/2 log(1 − rho²)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    y = rho * x + math.sqrt(1 - rho**2) * rng.standard_normal((n, d))
    return x, y, -d / 2 * math.log(1 - rho**2)


def embedded(n: int, D: int, rho: float, seed: int, k: int = 2, noise: float = 0.01):
    """k-dim correlated latents mapped into D dims by random orthonormal maps, plus isotropic noise.

    Projecting onto the map's span leaves z + noise, whose per-dim correlation is rho / (1 + noise²).
    """
    rng = np.random.default_rng(seed)
    zx = rng.standard_normal((n, k))
    zy = rho * zx + math.sqrt(1 - rho**2) * rng.standard_normal((n, k))
    qx, qy = (np.linalg.qr(rng.standard_normal((D, k)))[0] for _ in range(2))  # (D, k) orthonormal columns
    x = zx @ qx.T + noise * rng.standard_normal((n, D))
    y = zy @ qy.T + noise * rng.standard_normal((n, D))
    return x, y, -k / 2 * math.log(1 - (rho / (1 + noise**2)) ** 2)


MIXTURES = {  # name: (class means (K, d), shared isotropic sd)
    "2-class 1-D separated": (np.array([[-2.0], [2.0]]), 1.0),
    "2-class 1-D overlapping": (np.array([[-0.5], [0.5]]), 1.0),
    "3-class 2-D": (np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]]), 1.0),
    "4-class 2-D overlapping": (np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), 0.6),
}


def mixture(n: int, means: np.ndarray, sd: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """x (n, d), labels (n,) from an equal-weight isotropic Gaussian mixture."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(means), n)
    return means[y] + sd * rng.standard_normal((n, means.shape[1])), y


def mixture_mi(means: np.ndarray, sd: float, m: int = 400_000) -> float:
    """I(X; Y) = log K − E_x[H(Y | x)], the expectation by a large Monte Carlo sample (s.e. ≈ 1e-3 nats)."""
    x, _ = mixture(m, means, sd, seed=12345)
    loglik = -((x[:, None, :] - means[None]) ** 2).sum(-1) / (2 * sd**2)  # (m, K)
    log_post = loglik - logsumexp(loglik, axis=1, keepdims=True)
    return math.log(len(means)) + float((np.exp(log_post) * log_post).sum(1).mean())


@pytest.mark.parametrize("d, rho", [(1, 0.9), (2, 0.6), (2, 0.8), (3, 0.6), (3, 0.75)])
def test_ksg_on_correlated_gaussians(d, rho):
    x, y, truth = correlated(2000, d, rho, seed=d)
    assert 0.3 <= truth <= 2
    assert estimate_mi(x, y, "ksg") == pytest.approx(truth, rel=0.10)


@pytest.mark.parametrize("d, rho", [(1, 0.95), (2, 0.8), (3, 0.75)])
def test_gaussian_closed_form_on_correlated_gaussians(d, rho):
    x, y, truth = correlated(4000, d, rho, seed=10 + d)
    assert estimate_mi(x, y, "gaussian") == pytest.approx(truth, rel=0.03)


@pytest.mark.parametrize("name", list(MIXTURES))
@pytest.mark.parametrize("method", ["ksg", "probe"])
def test_ross_and_probe_on_gaussian_mixtures(name, method):
    means, sd = MIXTURES[name]
    x, y = mixture(2000, means, sd, seed=1)
    assert estimate_mi(x, y, method) == pytest.approx(mixture_mi(means, sd), abs=0.05)


def test_probe_ceiling_is_label_entropy():
    x, y = mixture(400, *MIXTURES["3-class 2-D"], seed=2)
    est = estimate_mi_detailed(x, y, "probe")
    p = np.bincount(y) / len(y)
    assert est.ceiling == pytest.approx(-(p * np.log(p)).sum())
    assert est.value <= est.ceiling


def test_raw_ksg_is_biased_low_in_high_dimension():
    # the documented k-NN shortfall: full-rank d = 10 (truth 2.23 nats) comes out more than 25% low.
    x, y, truth = correlated(2000, 10, 0.6, seed=5)
    assert estimate_mi(x, y, "ksg") < 0.75 * truth


@pytest.mark.parametrize("D", [10, 50, 200])
def test_latent_on_low_intrinsic_dimension(D):
    x, y, truth = embedded(2000, D, 0.8, seed=D)
    est = estimate_mi_detailed(x, y, "latent")
    assert f"PCA x {D}->2" in est.notes
    assert est.value == pytest.approx(truth, rel=0.15)


def test_latent_with_labels_uses_ross():
    means, sd = MIXTURES["3-class 2-D"]
    x2, y = mixture(2000, means, sd, seed=3)
    q = np.linalg.qr(np.random.default_rng(0).standard_normal((30, 2)))[0]  # (30, 2)
    x = x2 @ q.T + 0.01 * np.random.default_rng(1).standard_normal((2000, 30))
    assert estimate_mi(x, y, "latent") == pytest.approx(mixture_mi(means, sd), abs=0.05)


def test_infonce_never_exceeds_its_ceiling():
    x, y, truth = correlated(2000, 3, 0.999, seed=6)  # 9.3 nats, far above log 16
    est = estimate_mi_detailed(x, y, "infonce", batch_size=16, steps=300)
    assert est.ceiling == pytest.approx(math.log(16))
    assert 0.8 * est.ceiling < est.value <= est.ceiling < truth


@pytest.mark.parametrize("rho", [0.3, 0.5])
def test_infonce_approaches_small_mi(rho):
    x, y, truth = correlated(4000, 1, rho, seed=7)
    est = estimate_mi_detailed(x, y, "infonce")
    assert est.ceiling == pytest.approx(math.log(128))
    assert est.value == pytest.approx(truth, abs=0.03)


def test_torch_inputs_match_numpy():
    x, y = mixture(300, *MIXTURES["2-class 1-D separated"], seed=4)
    assert estimate_mi(torch.from_numpy(x).float(), torch.from_numpy(y)) == estimate_mi(x.astype(np.float32), y)


@pytest.mark.parametrize("x, y, method, match", [
    (np.zeros((50, 2)), np.zeros((49, 2)), "ksg", "x, y: expected the same number of samples, got 50 and 49"),
    (np.full((50, 2), np.nan), np.zeros((50, 2)), "ksg", "x: expected finite values"),
    (np.zeros((50, 2)), np.full(50, np.inf), "ksg", "y: expected finite values"),
    (np.zeros((50, 2)), np.zeros((50, 2)), "mine", "method: expected one of"),
    (np.zeros((5, 2)), np.zeros((5, 2)), "ksg", "x: expected at least 20 samples, got 5"),
    (np.zeros((50, 2, 2)), np.zeros((50, 2)), "ksg", "x: expected an \\(n, d\\) array"),
    (np.zeros((50, 2)), np.arange(50) % 2, "gaussian", "y: method 'gaussian' expects continuous y"),
    (np.zeros((50, 2)), np.zeros((50, 1)), "probe", "y: method 'probe' expects integer labels"),
])
def test_bad_inputs_raise_one_line_errors(x, y, method, match):
    with pytest.raises(ValueError, match=match) as info:
        estimate_mi(x, y, method)
    assert "\n" not in str(info.value)


def gaussian_denoiser(schedule: NoiseSchedule, var: torch.Tensor, shrink: float = 1.0):
    """The Bayes eps-predictor for x0 ~ N(0, diag(var)): E[x0 | x_t] = sqrt(ā) var / (ā var + 1 − ā) · x_t.

    shrink != 1 scales that posterior mean: a deliberately worse denoiser.
    """
    def denoise(xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        abar = schedule.alphas_cumprod[t][:, None]  # (B, 1)
        x0_hat = shrink * abar.sqrt() * var / (abar * var + 1 - abar) * xt  # (B, d)
        return (xt - abar.sqrt() * x0_hat) / (1 - abar).sqrt()
    return denoise


VAR = torch.tensor([0.25, 1.0, 4.0, 0.5], dtype=torch.float64)


def gaussian_x0(n: int = 2000) -> torch.Tensor:
    return torch.randn(n, len(VAR), generator=torch.Generator().manual_seed(0), dtype=torch.float64) * VAR.sqrt()


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_immse_curve_of_bayes_denoiser_matches_closed_form(kind):
    schedule = NoiseSchedule(kind)
    df = mi_x0_xt(gaussian_denoiser(schedule, VAR), gaussian_x0(), schedule)
    snr = torch.tensor(df.snr.to_numpy())[:, None]  # (K, 1)
    truth = 0.5 * torch.log1p(snr * VAR).sum(1).numpy()  # I = ½ Σ log(1 + γ s²)
    mmse = (VAR / (1 + snr * VAR)).sum(1).numpy()  # mmse = Σ s² / (1 + γ s²)
    assert df.snr.is_monotonic_decreasing and len(df) > 40
    np.testing.assert_allclose(df.mi_nats, truth, rtol=0.03)
    np.testing.assert_allclose(df.mmse, mmse, rtol=0.15)


def test_immse_x0_prediction_and_requested_timesteps():
    schedule, x0 = NoiseSchedule("linear"), gaussian_x0(1000)
    eps_model = gaussian_denoiser(schedule, VAR)

    def x0_model(xt, t):
        return schedule.predict_x0(xt, t, eps_model(xt, t))

    df = mi_x0_xt(x0_model, x0, schedule, timesteps=[500, 0, 100], n_snr=32, prediction="x0")
    assert df.timestep.tolist() == [0, 100, 500]
    assert (df.image_passes == df.image_passes[0]).all() and df.image_passes[0] % len(x0) == 0
    truth = 0.5 * torch.log1p(torch.tensor(df.snr.to_numpy())[:, None] * VAR).sum(1).numpy()
    np.testing.assert_allclose(df.mi_nats, truth, rtol=0.03)


def test_worse_denoiser_overstates_mmse_and_the_integral():
    schedule, x0 = NoiseSchedule("linear"), gaussian_x0(1000)
    exact = mi_x0_xt(gaussian_denoiser(schedule, VAR), x0, schedule, n_snr=24)
    worse = mi_x0_xt(gaussian_denoiser(schedule, VAR, shrink=0.8), x0, schedule, n_snr=24)
    # shrinking the posterior mean m by 0.8 adds 0.04 E‖m‖², negligible (below sampling noise) at SNR << 0.1
    high = exact.snr > 0.1
    assert (worse.mmse > exact.mmse)[high].all() and (worse.mi_nats > exact.mi_nats)[high].all()
    assert worse.mi_nats[0] > 10 * exact.mi_nats[0]  # mmse no longer falls as 1/γ: the integral is no MI


def test_immse_interval_matches_the_spread_over_independent_image_sets():
    """Ground truth: the estimate's spread over 30 independent sets of 200 Gaussian images (fresh noise each) at
    the Bayes denoiser. One set's bootstrap interval, read as ±1.96 se, lands within a factor 1.5 of that spread
    (mean over 4 sets), and about 95% of the 30 sets' intervals hold the closed-form I."""
    schedule, timesteps = NoiseSchedule("linear"), [0, 100, 300, 600, 900]
    denoiser = gaussian_denoiser(schedule, VAR)

    def curve(i: int) -> pd.DataFrame:
        x0 = torch.randn(200, len(VAR), generator=torch.Generator().manual_seed(i), dtype=torch.float64) * VAR.sqrt()
        return mi_x0_xt(denoiser, x0, schedule, timesteps, n_snr=32, seed=i, n_boot=400)

    curves = [curve(i) for i in range(30)]
    truth = 0.5 * torch.log1p(torch.tensor(curves[0].snr.to_numpy())[:, None] * VAR).sum(1).numpy()  # (K,)
    spread = np.std([c.mi_nats for c in curves], axis=0, ddof=1)  # (K,)
    se = np.mean([(c.mi_ci_high - c.mi_ci_low) / (2 * 1.96) for c in curves[:4]], axis=0)  # (K,)
    assert list(curves[0].columns) == IMMSE_COLUMNS
    assert np.all((spread / 1.5 < se) & (se < spread * 1.5)), (se, spread)
    covered = np.mean([(c.mi_ci_low <= truth) & (truth <= c.mi_ci_high) for c in curves])
    assert 0.85 <= covered <= 1.0, covered
    assert all((c.mi_ci_low < c.mi_nats).all() and (c.mi_nats < c.mi_ci_high).all() for c in curves)


def test_immse_without_bootstrap_has_no_interval():
    schedule = NoiseSchedule("linear")
    df = mi_x0_xt(gaussian_denoiser(schedule, VAR), gaussian_x0(50), schedule, n_snr=8, n_boot=0)
    assert df.mi_ci_low.isna().all() and df.mi_ci_high.isna().all() and np.isfinite(df.mi_nats).all()


@pytest.mark.parametrize("kw, match", [
    (dict(prediction="v"), "prediction: expected one of"),
    (dict(n_boot=1), "n_boot: expected 0 \\(no interval\\) or at least 2"),
    (dict(timesteps=[1000]), "timesteps: expected integers in \\[0, 1000\\)"),
    (dict(n_snr=1), "n_snr: expected at least 2"),
])
def test_immse_bad_arguments(kw, match):
    schedule = NoiseSchedule("linear")
    with pytest.raises(ValueError, match=match):
        mi_x0_xt(gaussian_denoiser(schedule, VAR), gaussian_x0(50), schedule, **kw)


def test_label_mi_grid_ranks_informative_features():
    means, sd = MIXTURES["3-class 2-D"]
    x, y = mixture(1000, means, sd, seed=8)
    noise = np.random.default_rng(9).standard_normal((1000, 2))
    tokens = np.repeat(x[:, None, :], 4, axis=1)  # (n, N=4, D=2): mean-pools back to x
    df = label_mi_grid({(0, "block.1"): x, (0, "block.2"): tokens, (900, "block.1"): noise}, y, method="ksg")
    assert list(df.columns) == MI_COLUMNS
    assert (df.mi_ci_low < df.mi_nats).all() and (df.mi_nats < df.mi_ci_high).all()
    assert df.mi_ci_low[0] < mixture_mi(means, sd) < df.mi_ci_high[0]  # the 95% interval holds the truth
    assert df.mi_nats[0] == pytest.approx(mixture_mi(means, sd), abs=0.05)
    assert df.mi_nats[1] == df.mi_nats[0]
    assert abs(df.mi_nats[2]) < 0.05


@pytest.mark.parametrize("method", ["ksg", "latent"])
def test_half_sample_se_matches_the_spread_over_independent_samples(method):
    """Ground truth: the estimator's standard deviation over 40 independent data sets of the same mixture; the
    half-sampling SE of single data sets (their mean over 4) lands within a factor 1.6 of it."""
    means, sd = MIXTURES["2-class 1-D overlapping"]
    spread = np.std([estimate_mi(*mixture(300, means, sd, seed=100 + i), method=method) for i in range(40)],
                    ddof=1)
    se = np.mean([half_sample_se(*mixture(300, means, sd, seed=200 + i), method=method, n_subsamples=20, seed=i)
                  for i in range(4)])
    assert spread / 1.6 < se < spread * 1.6, (se, spread)


def test_half_sample_se_needs_draws_and_enough_images():
    means, sd = MIXTURES["2-class 1-D separated"]
    x, y = mixture(100, means, sd, seed=0)
    assert math.isnan(half_sample_se(x, y, n_subsamples=1)) and math.isnan(half_sample_se(x[:30], y[:30]))
    df = label_mi_grid({(0, "block.0"): x}, y, method="ksg", n_subsamples=0)
    assert df.mi_se.isna().all() and df.mi_ci_low.isna().all() and np.isfinite(df.mi_nats).all()


def test_label_mi_grid_takes_a_feature_bank_like_every_grid_function():
    from analysis.features import FeatureBank

    means, sd = MIXTURES["3-class 2-D"]
    x, y = mixture(200, means, sd, seed=3)
    pooled = {(0, "block.0"): torch.from_numpy(x).float()}
    bank = FeatureBank(pooled=pooled, labels=torch.from_numpy(y), is_test=torch.zeros(200, dtype=torch.bool),
                       image_rows=torch.arange(200), grid=(1, 1), timesteps=[0], layers=["block.0"],
                       image_passes=200, wall_seconds=0.0)
    pd.testing.assert_frame_equal(label_mi_grid(bank, method="ksg"), label_mi_grid(pooled, y, method="ksg"))
    with pytest.raises(ValueError, match="labels: required with a dict of features"):
        label_mi_grid(pooled)
