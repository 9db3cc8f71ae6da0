"""analysis.curriculum against closed forms: uniform spread, KL of identical / known pairs, consecutive KL."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.curriculum import (EPS, bin_table, class_matrix, kl_divergence, load_class_curriculum,
                                 load_curriculum, marginal_matrix, policy_kl, snapshot, spread, training_kl)


def curriculum(probs: dict[int, list[float]], width: int = 20) -> pd.DataFrame:
    """Long-format snapshots {step: p over bins} with equal bins of `width` timesteps."""
    rows = [{"step": s, "bin": b, "t_lo": b * width, "t_hi": (b + 1) * width - 1, "probability": p}
            for s, ps in probs.items() for b, p in enumerate(ps)]
    return pd.DataFrame(rows)


def test_uniform_spread_is_number_of_bins_and_timesteps():
    df = curriculum({0: [0.25] * 4, 10: [1.0, 0, 0, 0]}, width=20)
    s = spread(df)
    assert s.step.tolist() == [0, 10]
    np.testing.assert_allclose(s.entropy_nats, [math.log(4), 0.0], atol=1e-12)
    np.testing.assert_allclose(s.effective_bins, [4.0, 1.0])
    np.testing.assert_allclose(s.effective_timesteps, [80.0, 20.0])  # mass spread uniformly within each bin


def test_effective_timesteps_with_unequal_bins():
    # bins of width 10 and 30 with p = (0.5, 0.5): per-timestep p is 0.05 on 10 steps and 1/60 on 30 steps
    df = pd.DataFrame({"step": 0, "bin": [0, 1], "t_lo": [0, 10], "t_hi": [9, 39], "probability": [0.5, 0.5]})
    p_t = np.r_[np.full(10, 0.05), np.full(30, 0.5 / 30)]
    assert spread(df).effective_timesteps[0] == pytest.approx(math.exp(-(p_t * np.log(p_t)).sum()))


def test_kl_closed_forms():
    p = np.array([0.5, 0.5])
    assert kl_divergence(p, p) == pytest.approx(0.0, abs=1e-12)
    q = np.array([0.25, 0.75])
    exact = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert kl_divergence(p, q, eps=0.0) == pytest.approx(exact, rel=1e-12)
    assert kl_divergence(p, q) == pytest.approx(exact, abs=1e-5)  # eps only nudges q
    # zero mass in q: finite, equal to the smoothed closed form
    qs = (np.array([1.0, 0.0]) + EPS) / (1 + 2 * EPS)
    assert kl_divergence(p, np.array([1.0, 0.0])) == pytest.approx((p * np.log(p / qs)).sum(), rel=1e-12)
    # point mass p against uniform over K: log K
    assert kl_divergence(np.eye(5)[2], np.full(5, 0.2), eps=0.0) == pytest.approx(math.log(5))


def test_kl_refuses_bad_inputs():
    with pytest.raises(ValueError, match="same length"):
        kl_divergence(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="non-negative"):
        kl_divergence(np.array([1.0, -1.0]), np.ones(2))


def test_marginal_matrix_and_snapshot():
    df = curriculum({0: [0.5, 0.5, 0.0], 4: [0.2, 0.3, 0.5]})
    m = marginal_matrix(df)
    assert m.shape == (2, 3) and m.index.tolist() == [0, 4]
    np.testing.assert_allclose(m.sum(axis=1), 1.0)
    np.testing.assert_allclose(snapshot(df).to_numpy(), [0.2, 0.3, 0.5])
    np.testing.assert_allclose(snapshot(df, 0).to_numpy(), [0.5, 0.5, 0.0])
    with pytest.raises(ValueError, match="step: expected one of the snapshot steps"):
        snapshot(df, 3)
    assert bin_table(df).t_mid.tolist() == [9.5, 29.5, 49.5]


def test_policy_kl_aligned_on_bins():
    a = curriculum({0: [0.25] * 4, 8: [0.5, 0.5, 0, 0]})
    b = curriculum({0: [0.25] * 4})
    assert policy_kl(a, b, step_a=0) == pytest.approx(0.0, abs=1e-9)
    assert policy_kl(a, b) == pytest.approx(math.log(2), abs=1e-5)  # last snapshot of a vs uniform b
    with pytest.raises(ValueError, match="same timestep bins"):
        policy_kl(a, curriculum({0: [0.25] * 4}, width=10))


def test_training_kl_between_consecutive_snapshots():
    df = curriculum({0: [0.5, 0.5], 2: [0.5, 0.5], 4: [0.25, 0.75]})
    k = training_kl(df)
    assert k.step_from.tolist() == [0, 2] and k.step.tolist() == [2, 4]
    assert k.kl_nats[0] == pytest.approx(0.0, abs=1e-12)
    exact = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)  # KL(new ‖ old)
    assert k.kl_nats[1] == pytest.approx(exact, abs=1e-5)


def test_load_from_run_dir_and_classes(tmp_path):
    df = curriculum({4: [0.1, 0.9], 0: [0.5, 0.5]})
    df.to_parquet(tmp_path / "curriculum.parquet")
    loaded = load_curriculum(tmp_path)
    assert loaded.step.tolist() == [0, 0, 4, 4]  # sorted by step, bin
    assert load_class_curriculum(tmp_path) is None
    assert class_matrix(None) is None

    classes = pd.concat([curriculum({0: [0.5, 0.5], 2: [1.0, 0.0]}).assign(label=0),
                         curriculum({0: [0.5, 0.5], 2: [0.0, 1.0]}).assign(label=1)])
    classes.to_parquet(tmp_path / "curriculum_classes.parquet")
    m = class_matrix(load_class_curriculum(tmp_path))
    np.testing.assert_allclose(m.to_numpy(), [[1.0, 0.0], [0.0, 1.0]])  # last step, label × bin
    np.testing.assert_allclose(class_matrix(classes, step=0).to_numpy(), 0.5)


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="curriculum.parquet: not found"):
        load_curriculum(tmp_path)
    pd.DataFrame({"step": [0], "probability": [1.0]}).to_parquet(tmp_path / "curriculum.parquet")
    with pytest.raises(ValueError, match=r"curriculum.parquet: expected columns .* missing \['bin'"):
        load_curriculum(tmp_path)
