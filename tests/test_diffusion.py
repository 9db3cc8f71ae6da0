"""NoiseSchedule against closed forms: beta tables, abar, q_sample moments, SNR and the sigma <-> t maps."""
import math

import numpy as np
import pytest
import torch

from aselect_core.diffusion import NoiseSchedule, as_time


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("T", [10, 50, 1000])
def test_alphas_cumprod_decreases_strictly_inside_zero_one(kind, T):
    abar = NoiseSchedule(kind, T).alphas_cumprod
    assert abar.shape == (T,) and abar.dtype == torch.float64
    assert bool((abar > 0).all()) and bool((abar < 1).all())
    assert bool((abar.diff() < 0).all())


def test_linear_betas_endpoints_at_1000_steps_and_rescaled_for_fewer():
    s = NoiseSchedule("linear", 1000)
    assert float(s.betas[0]) == pytest.approx(1e-4, rel=1e-12) and float(s.betas[-1]) == pytest.approx(0.02, rel=1e-12)
    assert torch.allclose(s.betas.diff(), torch.full((999,), (0.02 - 1e-4) / 999, dtype=torch.float64))
    assert torch.allclose(s.alphas_cumprod, torch.cumprod(1 - s.betas, 0))
    s100 = NoiseSchedule("linear", 100)
    assert float(s100.betas[0]) == pytest.approx(1e-3) and float(s100.betas[-1]) == pytest.approx(0.2)


def test_cosine_alphas_cumprod_follows_the_squared_cosine():
    T, s = 1000, 0.008
    abar = NoiseSchedule("cosine", T).alphas_cumprod
    f = lambda u: math.cos((u + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    for t in (0, 1, 250, 500, 900, 990):  # abar_t = f((t+1)/T) / f(0) wherever beta was not clipped
        assert float(abar[t]) == pytest.approx(f((t + 1) / T) / f(0), rel=1e-9)


def test_q_sample_moments_match_sqrt_abar_x0_and_one_minus_abar():
    s = NoiseSchedule("linear", 1000)
    torch.manual_seed(0)
    n = 200_000
    x0 = torch.full((n, 1), 0.7)
    for t in (0, 300, 999):
        xt = s.q_sample(x0, torch.full((n,), t))
        abar = float(s.alphas_cumprod[t])
        assert float(xt.mean()) == pytest.approx(math.sqrt(abar) * 0.7, abs=5e-3)
        assert float(xt.var()) == pytest.approx(1 - abar, rel=2e-2, abs=2e-4)


def test_q_sample_with_given_noise_is_the_closed_form_and_predict_x0_inverts_it():
    s = NoiseSchedule("cosine", 100)
    gen = torch.Generator().manual_seed(1)
    x0 = torch.rand(8, 3, 4, 4, generator=gen) * 2 - 1
    eps = torch.randn(8, 3, 4, 4, generator=gen)
    t = torch.tensor([0, 5, 20, 40, 60, 80, 98, 99])
    xt = s.q_sample(x0, t, eps)
    abar = s.alphas_cumprod[t].float().view(-1, 1, 1, 1)
    assert torch.allclose(xt, abar.sqrt() * x0 + (1 - abar).sqrt() * eps, atol=1e-6)
    assert torch.allclose(s.predict_x0(xt, t, eps), x0, atol=1e-3)  # t = 99 divides by sqrt(abar) ~ 0.01
    assert torch.allclose(s.predict_x0(xt[:7], t[:7], eps[:7]), x0[:7], atol=1e-5)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_snr_and_log_snr_agree_and_decrease(kind):
    s = NoiseSchedule(kind, 1000)
    t = torch.arange(1000)
    abar = s.alphas_cumprod
    assert torch.allclose(s.snr(t), abar / (1 - abar), rtol=1e-12)
    assert torch.allclose(s.log_snr(t), s.snr(t).log(), rtol=1e-9, atol=1e-9)
    assert bool((s.log_snr(t).diff() < 0).all())
    assert float(s.log_snr(7)) == pytest.approx(float(s.log_snr(t)[7]))


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_timestep_of_sigma_inverts_sigma_and_rounds_in_log_space(kind):
    s = NoiseSchedule(kind, 1000)
    t = torch.arange(1000)
    sig = s.sigma(t)
    assert torch.allclose(sig, ((1 - s.alphas_cumprod) / s.alphas_cumprod).sqrt(), rtol=1e-12)
    assert torch.equal(s.timestep_of_sigma(sig), t)
    log_sig = sig.log()
    below_mid = ((log_sig[:-1] + log_sig[1:]) / 2 - 1e-9).exp()  # just below the midpoint -> the lower step
    above_mid = ((log_sig[:-1] + log_sig[1:]) / 2 + 1e-9).exp()
    assert torch.equal(s.timestep_of_sigma(below_mid), t[:-1])
    assert torch.equal(s.timestep_of_sigma(above_mid), t[1:])
    assert s.timestep_of_sigma(torch.tensor([1e-9, 1e9])).tolist() == [0, 999]  # beyond the range: clipped


@pytest.mark.parametrize("args, message", [
    (("sigmoid", 1000), r"schedule kind: expected one of \['cosine', 'linear'\], got 'sigmoid'"),
    (("linear", 1), "num_timesteps: expected an integer >= 2, got 1"),
])
def test_bad_kind_or_timestep_count_fails_with_one_line(args, message):
    with pytest.raises(ValueError, match=message) as err:
        NoiseSchedule(*args)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("t, expected", [(0, 0), (np.int64(500), 500), (500.0, 500), (np.float32(0.5), 0.5),
                                         (0.9, 0.9)])
def test_as_time_keeps_a_flow_t_fractional_and_an_index_whole(t, expected):
    out = as_time(t)
    assert out == expected and type(out) is type(expected)
