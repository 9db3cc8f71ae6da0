"""Integrated-gradients attributions: completeness, zero attribution where the model is blind, shapes, errors."""
import numpy as np
import pytest
import torch
from torch import nn

from analysis.attribution import (LinearProbe, ProbeLogits, attribute_across_timesteps, attribution_for_run,
                                  block_attribution, load_selector, selector_attribution, selector_score,
                                  write_run_attributions)
from analysis.features import run_splits
from analysis.figures import build_figure
from aselect_core.datasets import load_dataset
from aselect_core.diffusion import NoiseSchedule
from aselect_core.model import DIT_CONFIGS
from aselect_core.policies.selector import Selector
from aselect_core.train import TrainConfig
from aselect_core.train.rundir import RunDir, RunDirError

LAYER = 2


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def dit():
    """A tiny DiT whose adaLN gates are non-zero (at the reference init every block is the identity)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = DIT_CONFIGS["DiT-T/4"](input_size=8, in_channels=1, num_classes=10, learn_sigma=False)
        for block in model.blocks:
            nn.init.normal_(block.adaLN_modulation[-1].weight, std=0.05)
            nn.init.normal_(block.adaLN_modulation[-1].bias, std=0.5)
    return model.eval()


@pytest.fixture(scope="module")
def data():
    ds = load_dataset("digits", image_size=8)
    return ds.images[:120], ds.labels[:120]


@pytest.fixture(scope="module")
def probe(dit, data):
    """A probe fitted on block LAYER's pooled null-class features of clean digits."""
    x, y = data
    with torch.no_grad():
        pooled = dit.forward_features(x, torch.zeros(len(x), dtype=torch.long), layers=[LAYER])[f"block.{LAYER}"]
    return LinearProbe.fit(pooled.mean(dim=1), y)


def logit_gap(model, probe, x0, target, t, noise):
    f = ProbeLogits(model, probe, NoiseSchedule(), t, LAYER)
    with torch.no_grad():
        return (f(x0, noise) - f(torch.zeros_like(x0), noise))[torch.arange(len(x0)), target]  # (B,)


def test_probe_fit_matches_its_training_labels(dit, data, probe):
    x, y = data
    with torch.no_grad():
        pooled = dit.forward_features(x, torch.zeros(len(x), dtype=torch.long), layers=[LAYER])[f"block.{LAYER}"]
    assert (probe(pooled.mean(dim=1)).argmax(dim=1) == y).float().mean() > 0.9
    binary = LinearProbe.fit(pooled.mean(dim=1), (y % 2))
    assert binary.weight.shape == (2, 192) and binary.num_classes == 2


def test_ig_completeness_across_timesteps(dit, data, probe):
    x0, y = data[0][:3], data[1][:3]
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(7))
    ts = [0, 300, 700]
    attrs, delta = attribute_across_timesteps(dit, probe, x0, y, ts, n_steps=64, layer=f"block.{LAYER}", noise=noise,
                                              internal_batch_size=64)
    assert attrs.shape == (3, 3, 1, 8, 8) and delta.shape == (3, 3)
    for i, t in enumerate(ts):
        gap = logit_gap(dit, probe, x0, y, t, noise)
        torch.testing.assert_close(attrs[i].sum(dim=(1, 2, 3)), gap, rtol=1e-2, atol=1e-3)
        assert (delta[i].abs() < 1e-2 * gap.abs().clamp_min(1e-1)).all()
    # more noise, less of x0 left in x_t: the logit moves less with the pixels
    mass = attrs.abs().sum(dim=(1, 2, 3, 4))
    assert mass[2] < mass[0]


def test_default_noise_is_fixed_by_seed(dit, data, probe):
    x0, y = data[0][:2], data[1][:2]
    a, _ = attribute_across_timesteps(dit, probe, x0, y, [100], n_steps=8, layer=LAYER, seed=3)
    b, _ = attribute_across_timesteps(dit, probe, x0, y, [100], n_steps=8, layer=LAYER, seed=3)
    c, _ = attribute_across_timesteps(dit, probe, x0, y, [100], n_steps=8, layer=LAYER, seed=4)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_probe_per_timestep_mapping(dit, data, probe):
    x0, y = data[0][:2], data[1][:2]
    zero = LinearProbe(torch.zeros_like(probe.weight), probe.bias, probe.mean, probe.std)
    attrs, _ = attribute_across_timesteps(dit, {0: probe, 500: zero}, x0, y, [0, 500], n_steps=8, layer=LAYER)
    assert attrs[0].abs().sum() > 0 and attrs[1].abs().sum() == 0


class LeftBlind(nn.Module):
    """The DiT behind a mask that zeroes the left half of its input: it cannot see those pixels."""

    def __init__(self, dit: nn.Module):
        super().__init__()
        self.dit, self.depth = dit, dit.depth

    def forward_features(self, x, t, y=None, layers=None):
        mask = torch.ones_like(x)
        mask[..., : x.shape[-1] // 2] = 0
        return self.dit.forward_features(x * mask, t, y, layers)


def test_ignored_region_gets_no_attribution(dit, data, probe):
    x0, y = data[0][:3], data[1][:3]
    attrs, _ = attribute_across_timesteps(LeftBlind(dit), probe, x0, y, [0, 400], n_steps=16, layer=LAYER)
    assert attrs[..., :4].abs().max() == 0
    assert (attrs[..., 4:].abs().sum(dim=(2, 3, 4)) > 1e-3).all()


def test_block_attribution_masses(dit, data, probe):
    x0, y = data[0][:2], data[1][:2]
    muted = DIT_CONFIGS["DiT-T/4"](input_size=8, in_channels=1, num_classes=10, learn_sigma=False)
    muted.load_state_dict(dit.state_dict())
    gate_mlp = slice(5 * 192, 6 * 192)  # adaLN chunks: shift/scale/gate msa, shift/scale/gate mlp
    with torch.no_grad():
        muted.blocks[1].adaLN_modulation[-1].weight[gate_mlp] = 0
        muted.blocks[1].adaLN_modulation[-1].bias[gate_mlp] = 0
    df = block_attribution(muted.eval(), probe, x0, y, timestep=100, n_steps=16, layer=LAYER)
    assert list(df.columns) == ["block", "part", "attribution", "abs_mass", "fraction", "effect", "delta"]
    assert df[["block", "part"]].values.tolist() == [[b, p] for b in range(LAYER + 1) for p in ("attn", "mlp")]
    assert df.fraction.sum() == pytest.approx(1.0)
    row = df.set_index(["block", "part"])
    assert row.abs_mass[(1, "mlp")] == 0 and (df.abs_mass.drop(3) > 0).all()
    assert (df.delta < 1e-2 * df.effect.abs().max()).all()  # completeness against the patched forward


@pytest.fixture(scope="module")
def selector():
    with torch.random.fork_rng():
        torch.manual_seed(1)
        net = Selector(1, 8, torch.full((10,), 100))
        nn.init.normal_(net.head.weight, std=1.0)  # the untrained head is zero (exactly uniform p)
    return net


def test_selector_attribution_completeness_and_sign(selector, data):
    x0 = data[0][:4]
    early, d_early = selector_attribution(selector, x0, "early", n_steps=64)
    late, _ = selector_attribution(selector, x0, "late", n_steps=64)
    assert early.shape == x0.shape and d_early.shape == (4,)
    with torch.no_grad():
        gap = selector_score(selector(x0), "early") - selector_score(selector(torch.zeros_like(x0)), "early")
    torch.testing.assert_close(early.sum(dim=(1, 2, 3)), gap, rtol=1e-2, atol=1e-4)
    torch.testing.assert_close(late, -early)
    bin3, _ = selector_attribution(selector, x0, 3, n_steps=16)
    assert bin3.abs().sum() > 0


def test_selector_score_definitions():
    logits = torch.tensor([[0.0, 0.0, 1.0, 1.0], [2.0, 0.0, 0.0, 0.0]])
    e = torch.e
    expected = torch.log(torch.tensor([2 / (2 * e), (e ** 2 + 1) / 2]))  # p(bins 0, 1) / p(bins 2, 3) per row
    torch.testing.assert_close(selector_score(logits, "early"), expected)
    torch.testing.assert_close(selector_score(logits, 0), logits.log_softmax(dim=1)[:, 0])


def test_load_selector_from_learned_run(tiny_run, tmp_path):
    net = load_selector(tiny_run(tmp_path / "l", steps=2, batch_size=8, policy="learned",
                                 policy_kwargs={"bins": 10, "update_every": 1}))
    assert isinstance(net, Selector) and not net.training and net(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    assert net.head.weight.abs().sum() > 0  # one REINFORCE step moved the zero-initialised head: trained weights
    plain = RunDir(tmp_path / "u")
    plain.write_config(TrainConfig(policy="uniform", out=str(plain.path)))
    with pytest.raises(ValueError, match="policy 'uniform'.*needs policy 'learned'"):
        load_selector(plain.path)
    with pytest.raises(RunDirError, match="config.json: not found"):
        load_selector(tmp_path / "missing")


def test_attribution_for_run_maps_a_test_image(tiny_run):
    run = tiny_run()
    image = run_splits(run, 40).test.images[3]  # (1, 8, 8)
    maps, x0 = attribution_for_run(run, 3, target=2, timesteps=[500, 0], layer=1, n_images=40, n_steps=4)
    assert maps.shape == (2, 8, 8) and np.isfinite(maps).all() and np.abs(maps).sum() > 0
    np.testing.assert_array_equal(x0, image.numpy())
    again, _ = attribution_for_run(run, 3, target=2, timesteps=[500, 0], layer=1, n_images=40, n_steps=4)
    np.testing.assert_array_equal(again, maps)  # cached features, fixed noise: a pure function of its arguments


def test_run_attributions_batch_equals_one_by_one_and_feed_the_figure(tiny_run):
    run = tiny_run()
    path = write_run_attributions(run, [3, 5], timesteps=[500, 0], layer=1, n_images=40, n_steps=4)
    stored = np.load(path)
    labels = run_splits(run, 40).test.labels[[3, 5]].numpy()
    assert stored["attributions"].shape == (2, 2, 8, 8) and stored["timesteps"].tolist() == [500, 0]
    np.testing.assert_array_equal(stored["targets"], labels)  # each image's own label
    for i, image in enumerate([3, 5]):  # a batch gives each image the maps it gets alone
        alone, x0 = attribution_for_run(run, image, int(labels[i]), timesteps=[500, 0], layer=1, n_images=40, n_steps=4)
        np.testing.assert_allclose(stored["attributions"][:, i], alone, rtol=1e-4, atol=1e-6)
        np.testing.assert_array_equal(stored["images"][i], x0)
    fig, data = build_figure("attribution", run)
    assert len(data) > 0 and len(fig.data) > 0


@pytest.mark.parametrize("kw, match", [
    (dict(x0=torch.zeros(1, 8, 8)), "x0: expected a non-empty image tensor"),
    (dict(timesteps=[1000]), "timesteps: expected integers in \\[0, 1000\\)"),
    (dict(timesteps=[]), "timesteps: expected a non-empty list"),
    (dict(n_steps=1), "n_steps: expected an integer >= 2"),
    (dict(target=10), "target: expected one class index or 2 of them in \\[0, 10\\)"),
    (dict(target=[1, 2, 3]), "target: expected one class index or 2"),
    (dict(layer="block.9"), "layer: expected a block index in \\[-6, 6\\)"),
    (dict(noise=torch.zeros(3, 1, 8, 8)), "noise: expected the shape of x0"),
    (dict(baseline=torch.zeros(2, 1, 4, 4)), "baseline: expected the shape of x0"),
    (dict(probe=(torch.zeros(10, 5), torch.zeros(10), torch.zeros(192), torch.ones(192))), "probe: expected weight"),
])
def test_errors(dit, probe, kw, match):
    args = dict(model=dit, probe=probe, x0=torch.zeros(2, 1, 8, 8), target=1, timesteps=[0], n_steps=4)
    with pytest.raises(ValueError, match=match):
        attribute_across_timesteps(**{**args, **kw})


def test_selector_and_block_errors(dit, probe, selector):
    x0 = torch.zeros(2, 1, 8, 8)
    for which in ("middle", 10, -11, True):
        with pytest.raises(ValueError, match="which: expected one of \\['early', 'late'\\]"):
            selector_attribution(selector, x0, which, n_steps=4)
    with pytest.raises(ValueError, match="parts: expected a non-empty list from"):
        block_attribution(dit, probe, x0, 1, 0, parts=["norm1"])
