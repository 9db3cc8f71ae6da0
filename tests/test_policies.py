"""Timestep policies: sampled t follow `distribution()`, resume is exact, loss-aware is unbiased, errors are clear."""
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load, save
from scipy import stats

from aselect_core.diffusion import NoiseSchedule
from aselect_core.policies import (POLICIES, Feedback, LossAwarePolicy, TimestepPolicy, effective_timesteps,
                                   make_policy, register_policy)

X0 = torch.zeros(20_000, 1, 2, 2)  # only the batch size matters to sampling


def ramp_loss(t: torch.Tensor, T: int) -> torch.Tensor:
    """Synthetic per-sample loss, 20x larger at the noisiest t than at t = 0."""
    return 0.05 + t.double() / T


def warm_up(policy: LossAwarePolicy, steps: int = 40, batch: int = 256) -> None:
    for step in range(steps):
        t, _ = policy.sample(X0[:batch], step)
        policy.observe(Feedback(x0=X0[:batch], t=t, loss=ramp_loss(t, policy.num_timesteps), step=step))


def built(name: str, **kw) -> TimestepPolicy:
    """A policy in an interesting state: loss-aware warmed up on the ramp loss."""
    policy = make_policy(name, seed=3, **kw)
    if isinstance(policy, LossAwarePolicy):
        warm_up(policy)
    return policy


CASES = [("uniform", {"num_timesteps": 1000}), ("uniform-subset", {"num_timesteps": 1000, "k": 7}),
         ("fixed", {"num_timesteps": 1000}), ("fixed", {"num_timesteps": 50, "timesteps": [3, 3, 49, 10]}),
         ("loss-aware", {"num_timesteps": 100, "history": 5}),
         ("loss-aware", {"num_timesteps": 1000, "bins": 20, "uniform_prob": 0.05}),
         ("lognormal", {"num_timesteps": 1000}),
         ("lognormal", {"num_timesteps": 200, "schedule": NoiseSchedule("cosine", 200), "p_mean": 0.5}),
         ("logit-normal", {"num_timesteps": 1000}), ("logit-normal", {"num_timesteps": 100, "m": 1.0, "s": 0.5})]
IDS = [f"{n}-{i}" for i, (n, _) in enumerate(CASES)]


def test_registry_holds_the_documented_names():
    assert {"uniform", "uniform-subset", "fixed", "loss-aware", "lognormal", "logit-normal"} <= set(POLICIES)
    assert all(POLICIES[name].name == name for name in POLICIES)


@pytest.mark.parametrize("name, kw", CASES, ids=IDS)
def test_sample_types_ranges_and_distribution_shape(name, kw):
    policy = built(name, **kw)
    T = kw["num_timesteps"]
    t, w = policy.sample(X0[:64], step=0)
    assert t.dtype == torch.int64 and t.shape == (64,) and int(t.min()) >= 0 and int(t.max()) < T
    assert w.dtype == torch.float32 and w.shape == (64,) and bool((w > 0).all())
    p = policy.distribution()
    assert p.dtype == torch.float64 and p.shape == (T,) and bool((p >= 0).all())
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("name, kw", CASES, ids=IDS)
def test_sampled_timesteps_follow_distribution(name, kw):
    """χ² goodness of fit of 20k draws against distribution(), cells of expected count < 5 pooled."""
    policy = built(name, **kw)
    p = policy.distribution().numpy()
    t, _ = policy.sample(X0, step=0)
    counts = np.bincount(t.numpy(), minlength=len(p))
    assert counts[p == 0].sum() == 0, "sampled a timestep of probability 0"
    expected = p * len(t)
    big = expected >= 5
    observed = np.append(counts[big], counts[~big].sum())
    expect = np.append(expected[big], expected[~big].sum())
    keep = expect > 0
    assert stats.chisquare(observed[keep], expect[keep]).pvalue > 1e-3


@pytest.mark.parametrize("name, kw", CASES, ids=IDS)
def test_state_dict_round_trip_through_safetensors_resumes_exactly(name, kw):
    policy = built(name, **kw)
    state = load(save(policy.state_dict()))  # tensors only, as the trainer stores it
    expected = []
    for step in range(3):
        t, w = policy.sample(X0[:32], step)
        policy.observe(Feedback(x0=X0[:32], t=t, loss=ramp_loss(t, policy.num_timesteps), step=step))
        expected.append((t, w))
    resumed = make_policy(name, seed=99, **kw)
    resumed.load_state_dict(state)
    for step, (t_ref, w_ref) in enumerate(expected):
        t, w = resumed.sample(X0[:32], step)
        resumed.observe(Feedback(x0=X0[:32], t=t, loss=ramp_loss(t, resumed.num_timesteps), step=step))
        assert torch.equal(t, t_ref) and torch.equal(w, w_ref)
    assert torch.equal(resumed.distribution(), policy.distribution())


def test_load_state_dict_refuses_other_timestep_counts_and_missing_keys():
    state = make_policy("loss-aware", num_timesteps=100).state_dict()
    with pytest.raises(ValueError, match="num_timesteps expected 50, got 100"):
        make_policy("loss-aware", num_timesteps=50).load_state_dict(state)
    with pytest.raises(ValueError, match="missing key 'seen'"):
        make_policy("loss-aware", num_timesteps=100).load_state_dict({k: v for k, v in state.items() if k != "seen"})


def test_same_seed_same_draws_other_seed_other_draws():
    a, b, c = (make_policy("uniform", seed=s) for s in (1, 1, 2))
    ta, tb, tc = (p.sample(X0[:100], 0)[0] for p in (a, b, c))
    assert torch.equal(ta, tb) and not torch.equal(ta, tc)


# -- the fixed-set policies ---------------------------------------------------------------------------------
def test_uniform_subset_takes_the_centres_of_k_equal_strata():
    policy = make_policy("uniform-subset", k=10)
    assert policy.timesteps.tolist() == [50, 150, 250, 350, 450, 550, 650, 750, 850, 950]
    assert make_policy("uniform-subset", num_timesteps=10, k=10).timesteps.tolist() == list(range(10))


def test_fixed_default_and_user_sets():
    assert make_policy("fixed").timesteps.tolist() == [0, 500, 999]
    assert make_policy("fixed", num_timesteps=50, timesteps=[49, 3, 3]).timesteps.tolist() == [3, 49]


@pytest.mark.parametrize("name, kw, message", [
    ("fixed", {"timesteps": [0, 1000]}, r"fixed policy: timesteps expected .*\[0, 1000\)"),
    ("fixed", {"timesteps": []}, "fixed policy: timesteps expected a non-empty list"),
    ("fixed", {"timesteps": 5}, "fixed policy: timesteps expected"),
    ("uniform-subset", {"k": 0}, r"uniform-subset policy: k expected an integer in \[1, 1000\]"),
    ("loss-aware", {"history": 0}, "loss-aware policy: history expected a positive integer"),
    ("loss-aware", {"uniform_prob": 1.5}, "loss-aware policy: uniform_prob expected"),
    ("loss-aware", {"bins": 1001}, r"loss-aware policy: bins expected an integer in \[1, 1000\]"),
    ("lognormal", {"p_std": 0.0}, "lognormal policy: p_std expected a positive number"),
    ("logit-normal", {"s": -1.0}, "logit-normal policy: s expected a positive number"),
    ("uniform", {"k": 3}, r"uniform policy: unknown parameter 'k'; expected one of \[\]"),
    ("loss-aware", {"histroy": 3}, r"loss-aware policy: unknown parameter 'histroy'; expected one of \['history'"),
    ("nope", {}, r"policy: expected one of \['fixed', .*'uniform-subset'\], got 'nope'"),
    ("uniform", {"num_timesteps": 0}, "num_timesteps: expected a positive integer, got 0"),
    ("lognormal", {"schedule": NoiseSchedule("linear", 10)}, "schedule: expected 1000 timesteps, got 10"),
])
def test_bad_parameters_fail_with_one_line_naming_the_field(name, kw, message):
    with pytest.raises(ValueError, match=message) as err:
        make_policy(name, **kw)
    assert "\n" not in str(err.value)


def test_sample_rejects_an_empty_batch():
    with pytest.raises(ValueError, match=r"x0: expected a batch .* got shape \(0, 3\)"):
        make_policy("uniform").sample(torch.zeros(0, 3), step=0)


def test_register_policy_plugs_a_new_class_into_make_policy():
    @register_policy("test-only-constant")
    class Constant(TimestepPolicy):
        def __init__(self, num_timesteps=1000, seed=0, schedule=None, at: int = 7):
            super().__init__(num_timesteps, seed, schedule)
            self.at = at

        def draw(self, batch_size, step):
            return torch.full((batch_size,), self.at), torch.ones(batch_size)

    try:
        policy = make_policy("test-only-constant", num_timesteps=10, at=4)
        assert policy.name == "test-only-constant" and policy.sample(X0[:3], 0)[0].tolist() == [4, 4, 4]
        assert policy.observe(Feedback(x0=X0[:3], t=torch.zeros(3, dtype=torch.long), loss=torch.ones(3), step=0)) == {}
        with pytest.raises(ValueError, match="already registered by Constant"):
            register_policy("test-only-constant")(Constant)
    finally:
        del POLICIES["test-only-constant"]


# -- effective_timesteps -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name, kw, k", [("uniform", {}, 1000), ("uniform-subset", {"k": 17}, 17), ("fixed", {}, 3)])
def test_effective_timesteps_is_k_for_uniform_over_k(name, kw, k):
    assert effective_timesteps(make_policy(name, **kw).distribution()) == pytest.approx(k, rel=1e-12)


def test_effective_timesteps_closed_forms():
    assert effective_timesteps(torch.tensor([0.0, 1.0, 0.0])) == pytest.approx(1.0)
    a = 0.2  # two points: exp(-a ln a - (1-a) ln(1-a))
    entropy = -a * math.log(a) - (1 - a) * math.log(1 - a)
    assert effective_timesteps(torch.tensor([a, 0.0, 1 - a])) == pytest.approx(math.exp(entropy))
    p = make_policy("logit-normal", num_timesteps=1000).distribution()
    assert 1 < effective_timesteps(p) < 1000


# -- loss-aware --------------------------------------------------------------------------------------------
def test_loss_aware_is_uniform_with_unit_weights_until_every_bin_is_full():
    policy = make_policy("loss-aware", num_timesteps=50, history=4, seed=0)
    t = torch.arange(50).repeat(3)  # every t seen 3 < 4 times
    metrics = policy.observe(Feedback(x0=X0[:150], t=t, loss=ramp_loss(t, 50), step=0))
    assert metrics == {"warmup_fraction": 0.0} and not policy.warmed_up()
    assert torch.allclose(policy.distribution(), torch.full((50,), 1 / 50, dtype=torch.float64))
    assert bool((policy.sample(X0[:100], 1)[1] == 1).all())
    t = torch.arange(49)  # t = 49 still short of a full history
    assert policy.observe(Feedback(x0=X0[:49], t=t, loss=ramp_loss(t, 50), step=1))["warmup_fraction"] == 0.98
    assert not policy.warmed_up()
    policy.observe(Feedback(x0=X0[:1], t=torch.tensor([49]), loss=torch.tensor([1.0]), step=2))
    assert policy.warmed_up() and policy.distribution()[49] > 5 * policy.distribution()[0]


def test_loss_aware_distribution_is_the_mixed_root_mean_square_loss():
    T, u = 100, 0.01
    policy = make_policy("loss-aware", num_timesteps=T, history=3, uniform_prob=u)
    t = torch.arange(T).repeat(3)
    loss = ramp_loss(t, T)
    policy.observe(Feedback(x0=X0[:300], t=t, loss=loss, step=0))
    rms = ramp_loss(torch.arange(T), T)  # three equal losses per t
    assert torch.allclose(policy.distribution(), (1 - u) * rms / rms.sum() + u / T)


def test_loss_aware_weights_keep_the_objective_unbiased():
    """E_{t~p}[w(t) L(t)] equals the uniform mean of L: exactly in expectation, and within Monte-Carlo error."""
    T = 1000
    policy = make_policy("loss-aware", num_timesteps=T, bins=25, seed=5)
    warm_up(policy)
    p = policy.distribution()
    assert float(p.max() / p.min()) > 5  # it did become non-uniform, towards the large losses
    assert p[T - 1] > p[0]
    L = ramp_loss(torch.arange(T), T)  # (T,)
    assert float((p * L / (T * p)).sum()) == pytest.approx(float(L.mean()), rel=1e-12)
    t, w = policy.sample(X0, step=0)
    estimate = (w.double() * L[t]).mean()
    assert float(estimate) == pytest.approx(float(L.mean()), rel=0.01)
    assert float(L[t].mean()) > 1.1 * float(L.mean())  # the unweighted mean is biased towards large losses


def test_loss_aware_history_matches_the_reference_shift_buffer():
    """Batches with many repeats per bin: the kept losses equal Improved-DDPM's last-`history` buffer."""
    T, H, bins = 30, 4, 6
    policy = make_policy("loss-aware", num_timesteps=T, history=H, bins=bins)
    reference = [[] for _ in range(bins)]
    gen = torch.Generator().manual_seed(0)
    for step in range(6):
        t = torch.randint(0, T, (40,), generator=gen)
        loss = torch.rand(40, generator=gen, dtype=torch.float64)
        policy.observe(Feedback(x0=X0[:40], t=t, loss=loss, step=step))
        for ti, li in zip(t.tolist(), loss.tolist()):
            reference[ti * bins // T] = (reference[ti * bins // T] + [li])[-H:]
    assert [len(r) for r in reference] == [H] * bins
    expected = torch.tensor(reference, dtype=torch.float64).sort(dim=1).values  # (bins, H)
    assert torch.equal(policy.losses.sort(dim=1).values, expected)


def test_loss_aware_rejects_mismatched_feedback():
    policy = make_policy("loss-aware", num_timesteps=10)
    with pytest.raises(ValueError, match=r"feedback.loss: expected shape \(4,\) like feedback.t, got \(3,\)"):
        policy.observe(Feedback(x0=X0[:4], t=torch.arange(4), loss=torch.ones(3), step=0))


def test_loss_aware_state_is_identical_across_ranks_given_the_same_feedback():
    ranks = [make_policy("loss-aware", num_timesteps=100, history=2, seed=s) for s in (0, 1)]
    for policy in ranks:
        warm_up(policy, steps=5)  # each rank draws its own t ...
    t = torch.arange(100).repeat(2)  # ... but observes the same gathered feedback afterwards
    for policy in ranks:
        policy.observe(Feedback(x0=X0[:200], t=t, loss=ramp_loss(t, 100), step=5, world_size=2))
    assert torch.equal(ranks[0].distribution(), ranks[1].distribution())


# -- continuous laws ----------------------------------------------------------------------------------------
def test_lognormal_mass_below_a_timestep_is_the_normal_cdf_at_the_log_sigma_midpoint():
    schedule = NoiseSchedule("linear", 1000)
    p = make_policy("lognormal", p_mean=-1.2, p_std=1.2).distribution()
    log_sigma = schedule.sigma(torch.arange(1000)).log().numpy()
    for t in (0, 100, 400, 998):
        boundary = (log_sigma[t] + log_sigma[t + 1]) / 2
        assert float(p[: t + 1].sum()) == pytest.approx(stats.norm.cdf(boundary, -1.2, 1.2), abs=1e-12)
    median_t = int(schedule.timestep_of_sigma(torch.tensor([math.exp(-1.2)])))
    assert float(p[:median_t].sum()) < 0.5 < float(p[: median_t + 1].sum())


def test_logit_normal_mass_is_the_logistic_normal_cdf_over_each_step():
    T, m, s = 100, 1.0, 0.5
    p = make_policy("logit-normal", num_timesteps=T, m=m, s=s).distribution()
    for t in (0, 37, 99):
        lo, hi = (stats.norm.cdf((math.log(u / (1 - u)) - m) / s) if 0 < u < 1 else float(u >= 1)
                  for u in (t / T, (t + 1) / T))
        assert float(p[t]) == pytest.approx(hi - lo, abs=1e-12)
    symmetric = make_policy("logit-normal", num_timesteps=T).distribution()
    assert torch.allclose(symmetric, symmetric.flip(0))
