"""Samplers against the Gaussian closed form, the generation metrics' closed forms, the sample CLI, generation.json."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from analysis.compare import run_row
from analysis.generation import (frechet_distance, kernel_inception_distance, outside_fraction, precision_recall,
                                 sample, write_generation)
from analysis.generation.metrics import _unbiased_mmd2
from analysis.generation.sampling import _guided_eps
from app.cli import main
from aselect_core.diffusion import NoiseSchedule

pytestmark = pytest.mark.usefixtures("one_thread")

MU, S = 0.3, 0.2  # data x0 ~ N(MU, S² I)


class GaussianEps(nn.Module):
    """The exact eps-predictor of x0 ~ N(MU, S² I): E[eps | x_t] = sqrt(1 - ab) (x_t - sqrt(ab) MU) / (ab S² + 1 - ab)."""

    def __init__(self, schedule: NoiseSchedule, channels: int = 1, size: int = 4):
        super().__init__()
        self.schedule = schedule
        self.config = {"in_channels": channels, "input_size": size}

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None) -> Tensor:
        ab = self.schedule.alphas_cumprod[t].float().view(-1, 1, 1, 1)  # (B, 1, 1, 1)
        return (1 - ab).sqrt() * (x - ab.sqrt() * MU) / (ab * S ** 2 + 1 - ab)  # (B, C, H, W)


@pytest.mark.parametrize("sampler,steps", [("ddim", 250), ("ddpm", 1000)])
def test_samplers_reproduce_gaussian_data(sampler: str, steps: int) -> None:
    schedule = NoiseSchedule("linear", 1000)
    x = sample(GaussianEps(schedule), 2000, steps, sampler, schedule, seed=0, batch_size=1000)  # (2000, 1, 4, 4)
    assert x.shape == (2000, 1, 4, 4)
    assert x.mean().item() == pytest.approx(MU, abs=0.01)
    assert x.std().item() == pytest.approx(S, rel=0.03)


def test_sampler_error_shrinks_with_steps() -> None:
    """Few steps under-disperse the narrow data distribution; the discretisation error falls as steps grow."""
    schedule = NoiseSchedule("linear", 1000)
    errors = [abs(sample(GaussianEps(schedule), 500, steps, "ddim", schedule).std().item() - S)
              for steps in (10, 50, 250)]
    assert errors[0] > errors[1] > errors[2]


def test_ddim_is_deterministic_per_seed() -> None:
    schedule = NoiseSchedule("cosine", 200)
    model = GaussianEps(schedule)
    a, b = (sample(model, 8, 10, "ddim", schedule, seed=3) for _ in range(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, sample(model, 8, 10, "ddim", schedule, seed=4))


class ZeroEps(nn.Module):
    """Predicts no noise at all: x0_hat = x_t / sqrt(abar), far outside [-1, 1] at high noise."""

    config = {"in_channels": 1, "input_size": 2}

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None) -> Tensor:
        return torch.zeros_like(x)


def test_clip_denoised_clamps_each_x0_estimate_and_rederives_eps() -> None:
    """Two DDIM steps (t = 999, then 0) by hand: clamp x0_hat, re-derive eps from it, step; without clipping the
    first step's x0_hat (~150 x_T) is carried as it is."""
    schedule = NoiseSchedule("linear", 1000)
    a_hi, a_lo = (schedule.alphas_cumprod[t].float() for t in (999, 0))
    x_T = torch.randn(4, 1, 2, 2, generator=torch.Generator().manual_seed(5))  # sample()'s first draw
    x0 = (x_T / a_hi.sqrt()).clamp(-1, 1)
    x_lo = a_lo.sqrt() * x0 + (1 - a_lo).sqrt() * (x_T - a_hi.sqrt() * x0) / (1 - a_hi).sqrt()
    want = (x_lo / a_lo.sqrt()).clamp(-1, 1)
    got = sample(ZeroEps(), 4, 2, "ddim", schedule, seed=5)
    assert torch.allclose(got, want, atol=1e-6)
    unclipped = sample(ZeroEps(), 4, 2, "ddim", schedule, seed=5, clip_denoised=False)
    assert torch.allclose(unclipped, (x_T / a_hi.sqrt()).clamp(-1, 1), atol=1e-6)  # eps stays 0: x0_hat throughout


class LabelEps(nn.Module):
    """eps = y / 10 for a class y, 0 for the null class (index 3): guidance scales the class part by w."""

    config = {"in_channels": 1, "input_size": 2}

    def null_labels(self, batch_size: int, device: torch.device) -> Tensor:
        return torch.full((batch_size,), 3, dtype=torch.long, device=device)

    def forward(self, x: Tensor, t: Tensor, y: Tensor) -> Tensor:
        return torch.where(y == 3, 0.0, y / 10.0).view(-1, 1, 1, 1).expand_as(x)  # (B, C, H, W)


def test_classifier_free_guidance_combines_cond_and_uncond() -> None:
    x, t = torch.zeros(2, 1, 2, 2), torch.zeros(2, dtype=torch.long)
    eps = _guided_eps(LabelEps(), x, t, torch.tensor([1, 2]), 4.0, 1)  # (2, 1, 2, 2)
    assert torch.allclose(eps[:, 0, 0, 0], torch.tensor([0.4, 0.8]))
    assert sample(LabelEps(), 3, 5, y=2, cfg_scale=1.5).shape == (3, 1, 2, 2)


def test_sample_rejects_bad_input() -> None:
    model = GaussianEps(NoiseSchedule())
    with pytest.raises(ValueError, match="sampler"):
        sample(model, 2, sampler="euler")
    with pytest.raises(ValueError, match="cfg_scale"):
        sample(model, 2, cfg_scale=2.0)


def test_frechet_distance_closed_form() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    mu = np.array([1.0, -2.0, 0.5])
    # identical samples shifted: equal covariances, so FD = ||mu||² exactly
    assert frechet_distance(a, a + mu) == pytest.approx(float(mu @ mu), rel=1e-6)
    # N(0, I) vs N(0, 4 I) in d dims: Tr(I + 4I - 2·2I) = d
    b = rng.normal(size=(4000, 3))
    assert frechet_distance(a, 2 * b) == pytest.approx(3.0, rel=0.1)
    assert frechet_distance(a, b) < 0.01


def test_kid_and_precision_recall() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(500, 8)), rng.normal(size=(500, 8))
    same = kernel_inception_distance(a, b, subsets=20, subset_size=200)
    far = kernel_inception_distance(a, b + 1.0, subsets=20, subset_size=200)
    assert abs(same["mean"]) < 0.05 and same["ci_low"] <= same["mean"] <= same["ci_high"]
    assert far["mean"] > 10 * max(abs(same["mean"]), 1e-3)
    pr = precision_recall(a, a)
    assert (pr["precision"], pr["recall"]) == (1.0, 1.0)
    shifted = precision_recall(a, a + 10.0)
    assert (shifted["precision"], shifted["recall"]) == (0.0, 0.0)


def test_outside_fraction_counts_samples_beyond_every_real_norm() -> None:
    rng = np.random.default_rng(2)
    real = rng.normal(size=(200, 6))
    real /= np.linalg.norm(real, axis=1, keepdims=True)  # (200, 6) on the unit sphere: the largest norm is 1
    fake = np.concatenate([0.5 * real[:30], 3.0 * real[30:40]])  # 30 inside, 10 at three times the radius
    assert outside_fraction(real, fake) == pytest.approx(0.25)
    assert outside_fraction(real, real) == 0.0  # no row is longer than the longest
    with pytest.raises(ValueError, match="same feature dimension"):
        outside_fraction(real, fake[:, :3])


def test_kid_interval_is_the_spread_of_the_full_estimate_even_when_subsets_ask_for_every_row() -> None:
    """subset_size >= n used to draw the whole set every time (a zero-width interval); halves give the spread that
    the estimate shows over independent data sets of the same size."""
    def draw(seed: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        return rng.normal(size=(300, 4)), rng.normal(0.3, 1.0, size=(300, 4))

    one = kernel_inception_distance(*draw(0), subsets=40, subset_size=1000)
    assert one["subset_size"] == 150 and one["std"] > 0 and one["ci_low"] < one["mean"] < one["ci_high"]
    full = [_unbiased_mmd2(*draw(s)) for s in range(1, 31)]  # the whole-set estimate on 30 independent pairs
    assert 0.5 < one["std"] / np.std(full, ddof=1) < 2.0
    with pytest.raises(ValueError, match="at least 4 rows in each set"):
        kernel_inception_distance(np.zeros((3, 2)), np.zeros((10, 2)))


def test_cli_sample_writes_npz_and_png(tiny_run, tmp_path) -> None:
    run = tiny_run()
    assert main(["sample", str(run), "--n", "5", "--steps", "3", "--sampler", "ddpm", "--out", str(tmp_path)]) == 0
    images = np.load(tmp_path / "samples.npz")["images"]
    assert images.shape == (5, 1, 8, 8) and images.min() >= -1 and images.max() <= 1
    assert (tmp_path / "samples.png").stat().st_size > 0
    assert main(["sample", str(run), "--n", "2", "--class", "1", "--out", str(tmp_path)]) == 2  # unconditional run


def test_generation_json_schema(tiny_run, tmp_path) -> None:
    run = tiny_run()
    scores = write_generation(run, n_samples=40, steps=3, cache_dir=tmp_path, classifier_epochs=1)
    written = json.loads((run / "analysis" / "generation.json").read_text())
    assert written == json.loads(json.dumps(scores))
    for key in ("fd", "fd_floor", "precision", "recall", "precision_floor", "recall_floor", "outside",
                "outside_floor"):
        assert np.isfinite(written[key]) and written[key] >= 0
    assert written["outside"] <= 1 and written["outside_floor"] <= 1
    assert set(written["kid"]) >= {"mean", "ci_low", "ci_high"} and written["n_samples"] == 40
    assert written["feature_extractor"]["name"].startswith("domain-cnn:digits")
    assert 0 <= written["feature_extractor"]["test_accuracy"] <= 1
    assert list(tmp_path.glob("domain_cnn-*.safetensors"))  # cached, reused on the next call
    row = run_row(run)  # the comparison table reads it; a run without one does not list it as missing
    assert (row["fd"], row["kid"]) == (written["fd"], written["kid"]["mean"])
    assert "generation" not in run_row(tiny_run())["missing"]


def test_domain_classifier_is_a_usable_yardstick_and_loads_back_from_its_cache(tmp_path) -> None:
    """Scores in its features rank samples only if it separates the classes: digits at 8 px, 3 epochs."""
    from analysis.generation.classifier import domain_classifier
    from aselect_core.datasets import load_dataset

    trained = domain_classifier("digits", 8, tmp_path, epochs=3)
    assert trained.test_accuracy >= 0.9
    loaded = domain_classifier("digits", 8, tmp_path, epochs=3)
    images = load_dataset("digits", "test", 8).images[:64]
    assert loaded.test_accuracy == trained.test_accuracy
    assert torch.equal(loaded.features(images), trained.features(images))  # batch-norm statistics included
    train_features = trained.features(load_dataset("digits", "train", 8).images)
    assert train_features.var(dim=0).mean().item() == pytest.approx(1.0, rel=1e-6)  # unit mean variance
