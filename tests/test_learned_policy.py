"""The `learned` policy (A-SelecT selector): finds the informative band, budgets entropy, resumes exactly, DDP-safe."""
import math

import pytest
import torch
from safetensors.torch import load, save

from aselect_core.policies import Feedback, effective_timesteps, make_policy
from aselect_core.policies.learned import LearnedPolicy
from aselect_core.policies.selector import infonce_reward, timestep_entropy

T, N, B, D = 1000, 256, 32, 16
_g = torch.Generator().manual_seed(0)
POOL = torch.randn(N, 1, 8, 8, generator=_g) + torch.randn(N, 1, 1, 1, generator=_g).sign() / 2  # the "dataset"
LABELS = (POOL.flatten(1).mean(dim=1) > 0).long()  # (N,) two classes (mean ±1/2) the selector can read off x0
PROJ = torch.randn(64, D, generator=torch.Generator().manual_seed(1))


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def band_features(bands: dict[int, tuple[int, int]]):
    """features(x0, t): x0's embedding (+ small noise) when t is in its class's band, pure noise elsewhere."""
    def features(x0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = torch.nn.functional.normalize(x0.flatten(1) @ PROJ, dim=1)  # (B, D)
        lo_hi = torch.tensor([bands[int(c)] for c in (x0.flatten(1).mean(dim=1) > 0).long()])  # (B, 2)
        inside = ((t >= lo_hi[:, 0]) & (t < lo_hi[:, 1])).float()[:, None]  # (B, 1)
        return inside * (emb + 0.1 * torch.randn_like(emb)) + (1 - inside) * torch.randn_like(emb)
    return features


BAND = band_features({0: (300, 400), 1: (300, 400)})


def drive(policy: LearnedPolicy, steps: int, features=BAND, start: int = 0, data_seed: int = 5):
    """Run sample -> observe for `steps` steps on batches of POOL; returns [(t, w, metrics), ...]."""
    g = torch.Generator().manual_seed(data_seed + start)
    out = []
    for step in range(start, start + steps):
        idx = torch.randint(0, N, (B,), generator=g)
        x0, y = POOL[idx], LABELS[idx]
        t, w = policy.sample(x0, step)
        metrics = policy.observe(Feedback(x0=x0, t=t, loss=torch.zeros(B), step=step, y=y, features=features))
        out.append((t, w, metrics))
    return out


def learned(**kw) -> LearnedPolicy:
    return make_policy("learned", **{"seed": 1, "update_every": 1, "lr": 1e-2, **kw})


# -- (a) the selector finds where the information is ------------------------------------------------------------
@pytest.fixture(scope="module")
def on_band():
    """A default selector (target_effective = T / 10 = 100) after 150 steps on the 300-400 band, and its history."""
    policy = learned()
    assert float(policy.distribution()[300:400].sum()) == pytest.approx(0.1)  # starts uniform
    return policy, drive(policy, 150)


def recent_effective(history) -> float:
    """Mean effective timesteps of the last 20 batch marginals."""
    return sum(m["effective_timesteps"] for _, _, m in history[-20:]) / 20


def test_selector_puts_most_mass_in_the_band_where_features_identify_x0(on_band):
    policy, history = on_band
    mass = float(policy.distribution()[300:400].sum())
    assert mass >= 0.6, f"band mass {mass:.3f} after 150 steps"
    assert history[-1][2]["reward"] > 0.8 * math.log(B)  # near the InfoNCE ceiling log B


def test_budget_term_holds_the_effective_timesteps_near_the_target(on_band):
    """The band is 100 timesteps wide: without the budget term the reward collapses p(t) onto a few bins of it."""
    unbudgeted = drive(learned(budget_weight=0.0), 150)
    assert 70 <= recent_effective(on_band[1]) <= 130 and recent_effective(unbudgeted) < 40


def test_selection_depends_on_the_image_and_is_reported_per_class():
    policy = learned()
    drive(policy, 150, features=band_features({0: (300, 400), 1: (600, 700)}))
    per_class = policy.class_distributions()
    assert sorted(per_class) == [0, 1]
    assert float(per_class[0][300:400].sum()) >= 0.6 and float(per_class[1][600:700].sum()) >= 0.6
    assert all(float(p.sum()) == pytest.approx(1.0, abs=1e-12) for p in per_class.values())


def test_trivial_term_keeps_mass_off_the_margins():
    everywhere = band_features({0: (0, T), 1: (0, T)})  # identity at every t: only the penalties decide
    policy = learned(margin=100, target_effective=500.0)
    drive(policy, 100, features=everywhere)
    p = policy.distribution()
    assert float(p[:100].sum() + p[-100:].sum()) < 0.05  # uniform: 0.2


# -- (b) effective timesteps ------------------------------------------------------------------------------------
def test_effective_timesteps_closed_forms():
    size = torch.full((50,), 20)  # 50 bins of 20 timesteps
    p = torch.zeros(50, dtype=torch.float64)
    p[15:20] = 0.2  # uniform over 5 bins = 100 timesteps
    assert math.exp(timestep_entropy(p, size)) == pytest.approx(100.0, rel=1e-12)
    q = torch.rand(50, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    q /= q.sum()
    spread = (q / 20).repeat_interleave(20)  # (T,)
    assert math.exp(timestep_entropy(q, size)) == pytest.approx(effective_timesteps(spread), rel=1e-12)
    policy = make_policy("learned", bins=7, num_timesteps=100)  # unequal bins: 14 or 15 timesteps
    metrics = policy.observe(Feedback(x0=POOL[:8], t=torch.zeros(8, dtype=torch.long), loss=torch.zeros(8), step=1))
    assert metrics["effective_timesteps"] == pytest.approx(100.0, rel=1e-5)  # an untrained selector is uniform in t
    assert metrics["entropy"] == pytest.approx(math.log(100), rel=1e-5)
    assert effective_timesteps(policy.distribution()) == pytest.approx(100.0, rel=1e-5)


def test_infonce_reward_ceiling_and_floor():
    f = torch.eye(B, D * 2)  # B orthogonal features: each view identifies its image
    assert torch.allclose(infonce_reward(f, f, 0.01), torch.full((B,), math.log(B)), atol=1e-4)
    same = torch.ones(B, D)  # nothing tells the images apart
    assert torch.allclose(infonce_reward(same, same, 0.1), torch.zeros(B), atol=1e-5)


# -- (c) resume-exact -------------------------------------------------------------------------------------------
def test_state_dict_round_trip_through_safetensors_resumes_exactly():
    policy = learned(update_every=2)
    drive(policy, 10)
    state = load(save(policy.state_dict()))  # tensors only, as the trainer stores them
    assert any(k.startswith("optim.") for k in state) and tuple(state["image_shape"].tolist()) == (1, 8, 8)
    expected = drive(policy, 6, start=10)
    resumed = learned(update_every=2, seed=99)  # network not built yet: rebuilt from the stored shape
    resumed.load_state_dict(state)
    for (t_ref, w_ref, m_ref), (t, w, m) in zip(expected, drive(resumed, 6, start=10)):
        assert torch.equal(t, t_ref) and torch.equal(w, w_ref) and m == m_ref
    for (k, a), b in zip(policy.net.state_dict().items(), resumed.net.state_dict().values()):
        assert torch.equal(a, b), k
    assert torch.equal(resumed.distribution(), policy.distribution())


def test_unbuilt_state_resets_a_built_policy_and_refused_state_changes_nothing():
    fresh = learned().state_dict()
    assert "image_shape" not in fresh
    policy = learned()
    drive(policy, 3)
    before = policy.state_dict()
    with pytest.raises(ValueError, match="bins expected 50, got 10"):
        policy.load_state_dict(learned(bins=10).state_dict())
    with pytest.raises(ValueError, match=r"net\.body\.0\.weight expected shape \(32, 1, 3, 3\), got \(8, 1, 3, 3\)"):
        other = learned(hidden=8)
        drive(other, 1)
        policy.load_state_dict(other.state_dict())
    assert all(torch.equal(before[k], v) for k, v in policy.state_dict().items())
    policy.load_state_dict(fresh)
    assert policy.net is None and torch.equal(policy.distribution(), torch.full((T,), 1 / T, dtype=torch.float64))


# -- (d) unbiased weights ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["unbiased", "concentrated"])
def test_unbiased_weights_recover_the_uniform_mean_of_a_per_t_loss(mode):
    policy = learned(mode=mode, uniform_prob=0.1)
    drive(policy, 40)  # concentrate p on 300-400
    x0 = POOL.repeat(40, 1, 1, 1)  # 10 240 draws
    t, w = policy.sample(x0, step=40)
    loss = 0.05 + t.double() / T
    uniform_mean = 0.05 + (T - 1) / (2 * T)
    weighted = w.double() * loss
    se = float(weighted.std()) / math.sqrt(len(w))
    if mode == "unbiased":
        assert float(weighted.mean()) == pytest.approx(uniform_mean, abs=4 * se)
        assert float(w.max()) <= 1 / 0.1 + 1e-4  # bounded by 1 / uniform_prob, no clipping
    else:  # the seed's objective moves training to the band: the same estimate is far off the uniform mean
        assert bool((w == 1).all()) and abs(float(weighted.mean()) - uniform_mean) > 20 * se


# -- (e) DDP invariant ------------------------------------------------------------------------------------------
def test_policies_with_other_sampling_seeds_stay_identical_given_identical_feedback():
    a, b = learned(seed=1), learned(seed=2)  # two ranks: the trainer offsets `seed` per rank
    g = torch.Generator().manual_seed(5)
    differed = False
    for step in range(20):
        x0 = POOL[torch.randint(0, N, (B,), generator=g)]
        ta, tb = a.sample(x0, step)[0], b.sample(x0, step)[0]
        differed |= not torch.equal(ta, tb)
        gathered = Feedback(x0=x0, t=ta, loss=torch.zeros(B), step=step, features=BAND)  # what all-gather gives both
        assert a.observe(gathered) == b.observe(gathered)
    assert differed  # each rank samples its own t ...
    for (k, wa), wb in zip(a.net.state_dict().items(), b.net.state_dict().values()):
        assert torch.equal(wa, wb), k  # ... but the selectors stay bit-identical
    assert torch.equal(a.distribution(), b.distribution()) and a.baseline == b.baseline


def test_reward_noise_leaves_the_callers_rng_alone():
    policy = learned()
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    drive(policy, 2)
    assert torch.equal(torch.rand(3), expected)


# -- (f) errors -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw, message", [
    ({"bins": 0}, r"bins expected an integer in \[1, 1000\], got 0"),
    ({"bins": 2.5}, r"bins expected an integer"),
    ({"mode": "greedy"}, r"mode expected one of \['concentrated', 'unbiased'\], got 'greedy'"),
    ({"update_every": 0}, "update_every expected a positive integer"),
    ({"lr": 0.0}, "lr expected a positive number"),
    ({"target_effective": 0.5}, r"target_effective expected a number in \[1, 1000\]"),
    ({"trivial_weight": -1.0}, "trivial_weight expected a number >= 0"),
    ({"budget_weight": -1.0}, "budget_weight expected a number >= 0"),
    ({"margin": 500}, r"margin expected an integer in \[0, 499\], got 500"),
    ({"hidden": 0}, "hidden expected a positive integer"),
    ({"temperature": 0.0}, "temperature expected a positive number"),
    ({"mode": "unbiased", "uniform_prob": 0.0}, r"uniform_prob expected a number in \[1e-06, 1\) in unbiased mode"),
    ({"uniform_prob": 1.0}, r"uniform_prob expected a number in \[0, 1\) in concentrated mode"),
    ({"baseline_decay": 1.0}, r"baseline_decay expected a number in \[0, 1\)"),
    ({"marginal_decay": -0.1}, r"marginal_decay expected a number in \[0, 1\)"),
    ({"selector_seed": "a"}, "selector_seed expected an integer"),
    ({"bin": 5}, r"learned policy: unknown parameter 'bin'"),
])
def test_bad_parameters_fail_with_one_line_naming_the_field(kw, message):
    with pytest.raises(ValueError, match=message) as err:
        make_policy("learned", **kw)
    assert "\n" not in str(err.value)


def test_bad_feedback_and_images_fail_with_one_line():
    policy = learned()
    t, _ = policy.sample(POOL[:4], 0)
    with pytest.raises(ValueError, match="feedback.features: the learned policy needs"):
        policy.observe(Feedback(x0=POOL[:4], t=t, loss=torch.zeros(4), step=0))
    with pytest.raises(ValueError, match=r"feedback.t: expected shape \(4,\)"):
        policy.observe(Feedback(x0=POOL[:4], t=t[:3], loss=torch.zeros(3), step=0, features=BAND))
    with pytest.raises(ValueError, match=r"x0: expected images of shape \(1, 8, 8\) .* got \(1, 4, 4\)"):
        policy.sample(torch.zeros(2, 1, 4, 4), 1)
