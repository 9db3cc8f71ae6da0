"""Baselines: random-init DiT grids (the adaLN-Zero identity fact), the MAE model, its objective in the trainer."""
from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest
import torch

from analysis.baselines import pixel_grid, random_init_dit, random_init_grid
from analysis.features import extract_features, probe_splits
from analysis.probe import GRID_COLUMNS
from aselect_core.model import MAE, CheckpointError, load_dit, load_mae, load_model, random_masking
from aselect_core.train import ConfigError, RunDir, TrainConfig, train
from aselect_core.train.config import HASHED_WHEN_SET

MAE_POLICY = dict(policy="fixed", policy_kwargs={"timesteps": [0]})


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models on shared cores: one thread is faster than two fighting."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(out, **kw) -> TrainConfig:
    base = dict(data="digits", model="DiT-T/4", image_size=8, batch_size=16, steps=4, checkpoint_every=2,
                log_every=2, curriculum_every=2, curriculum_bins=10, seed=1, out=str(out))
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def dit_run(tmp_path_factory):
    return train(tiny(tmp_path_factory.mktemp("dit") / "r", steps=2), progress=False)


@pytest.fixture(scope="module")
def mae_run(tmp_path_factory):
    return train(tiny(tmp_path_factory.mktemp("mae") / "r", objective="mae", **MAE_POLICY), progress=False)


# -- random init ------------------------------------------------------------------------------------------------
def test_random_init_grid_rows_and_columns(dit_run):
    grid = random_init_grid(dit_run, [0, 500], None, n_images=40, seed=0, knn=False)
    assert set(GRID_COLUMNS) | {"model", "init", "image_passes"} == set(grid.columns)
    assert len(grid) == 2 * 6  # timesteps x the DiT-T's six blocks
    assert sorted(grid.layer.unique()) == [f"block.{i}" for i in range(6)]
    assert (grid.model == "random-init").all() and (grid.init == "random-gates").all()
    assert grid.accuracy.between(0, 1).all() and (grid.n_test == 20).all()
    assert (grid.image_passes == 2 * 60).all()  # (40 train + 20 test images) x 2 timesteps


def test_reference_init_blocks_are_the_identity_random_gates_are_not(dit_run):
    like = load_dit(dit_run)
    banks = {init: extract_features(random_init_dit(like, init, seed=0), "digits", [0, 700], None, 20,
                                    kinds=("embed", "block"), cache=False, progress=False)
             for init in ("reference", "random-gates")}
    for t in (0, 700):
        embed = banks["reference"].pooled[(t, "embed")]  # (n, D)
        assert all(torch.equal(banks["reference"].pooled[(t, f"block.{i}")], embed) for i in range(6))
        assert torch.equal(banks["random-gates"].pooled[(t, "embed")], embed)  # same seed: same embedding
        gap = (banks["random-gates"].pooled[(t, "block.5")] - embed).norm() / embed.norm()
        assert gap > 0.5


def test_random_init_is_seeded_and_rejects_unknown_inits(dit_run):
    like = load_dit(dit_run)
    a, b, c = (random_init_dit(like, "random-gates", s) for s in (3, 3, 4))
    assert torch.equal(a.blocks[0].attn.qkv.weight, b.blocks[0].attn.qkv.weight)
    assert not torch.equal(a.blocks[0].attn.qkv.weight, c.blocks[0].attn.qkv.weight)
    with pytest.raises(ValueError, match="init: expected one of reference, random-gates"):
        random_init_dit(like, "orthogonal")


def test_pixel_grid_is_the_pixel_baseline_on_the_runs_images(dit_run):
    grid = pixel_grid(dit_run, [0, 999], n_images=40, seed=0, knn=False)
    assert list(grid.layer) == ["pixels", "pixels"] and (grid.model == "pixels").all()
    assert grid.set_index("timestep").accuracy[0] > grid.set_index("timestep").accuracy[999]


# -- the MAE model ----------------------------------------------------------------------------------------------
def test_masking_keeps_the_requested_ratio():
    tokens = torch.arange(2 * 64 * 3, dtype=torch.float32).reshape(2, 64, 3)  # (B, N, D), every token distinct
    torch.manual_seed(0)
    for ratio, keep in ((0.75, 16), (0.5, 32), (0.9, 6)):
        kept, mask, ids_restore = random_masking(tokens, ratio)
        assert kept.shape == (2, keep, 3) and (mask.sum(dim=1) == 64 - keep).all()
        for b in range(2):  # the kept tokens are exactly the unmasked ones
            visible = tokens[b][mask[b] == 0]
            assert torch.equal(kept[b].sort(dim=0).values, visible.sort(dim=0).values)
        assert torch.equal(ids_restore.sort(dim=1).values, torch.arange(64).expand(2, -1))
    model = MAE(input_size=32, patch_size=4, in_channels=1, hidden_size=32, depth=2, num_heads=2)
    _, pred, mask = model(torch.randn(3, 1, 32, 32))
    assert pred.shape == (3, 64, 16) and (mask.sum(dim=1) == 48).all()  # 0.75 by default


def test_decoder_learns_a_trivial_input():
    torch.manual_seed(0)
    model = MAE(input_size=8, patch_size=2, in_channels=1, hidden_size=32, depth=1, num_heads=2)
    x = torch.linspace(-1, 1, 64).reshape(1, 1, 8, 8).expand(8, -1, -1, -1)  # one fixed ramp image
    optim = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss = model(x)[0].mean()
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.item())
    assert losses[-1] < 0.05 * losses[0]


def test_forward_features_reads_the_full_image():
    model = MAE(input_size=16, patch_size=4, in_channels=3, hidden_size=32, depth=3, num_heads=2).eval()
    x = torch.randn(2, 3, 16, 16)
    feats = model.forward_features(x, layers=[0, -1], kinds=("embed", "block"))
    assert list(feats) == ["embed", "block.0", "block.2"]
    assert all(v.shape == (2, 16, 32) for v in feats.values())  # all 16 patches: no masking
    assert torch.equal(feats["block.2"], model.forward_features(x)["block.2"])  # no randomness
    with pytest.raises(ValueError, match="unknown kinds"):
        model.forward_features(x, kinds=("attn",))


# -- the MAE objective in the trainer ---------------------------------------------------------------------------
def test_mae_run_counts_passes_and_loads(mae_run):
    rd = RunDir(mae_run)
    m = rd.metrics()
    assert list(m.image_passes) == [3 * 16 * s for s in range(1, 5)]  # the DiT's rule: forward 1, backward 2
    assert rd.curriculum().effective_timesteps.round(6).eq(1.0).all()  # one view: t = 0 only
    model = load_mae(mae_run)
    assert isinstance(model, MAE) and isinstance(load_model(mae_run), MAE)
    assert model.config["hidden_size"] == 192 and model.depth == 6 and model.config["patch_size"] == 4
    with pytest.raises(CheckpointError):
        load_dit(mae_run)
    with pytest.raises(CheckpointError, match="not an MAE checkpoint"):
        load_mae(train(tiny(rd.path.parent / "dit", steps=2), progress=False))


def test_mae_run_resumes_exactly(tmp_path, mae_run):
    train(tiny(tmp_path / "b", objective="mae", steps=2, **MAE_POLICY), progress=False)
    resumed = train(tiny(tmp_path / "b", objective="mae", resume=True, **MAE_POLICY), progress=False)
    a, b = RunDir(mae_run), RunDir(resumed)
    pd.testing.assert_frame_equal(a.metrics().drop(columns="wall_seconds"), b.metrics().drop(columns="wall_seconds"),
                                  check_exact=True)
    wa, wb = load_mae(mae_run, weights="model").state_dict(), load_mae(resumed, weights="model").state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_extract_features_reads_an_mae_run_at_t0_without_noise(mae_run):
    bank = extract_features(mae_run, None, [0], [0, -1], 20, progress=False)
    assert bank.timesteps == [0] and bank.layers == ["block.0", "block.5"]
    assert bank.pooled[(0, "block.5")].shape == (30, 192) and bank.image_passes == 30
    splits = probe_splits("digits", 20, 0, None, 8)  # the bank's images: 20 train then 10 test
    clean = torch.cat([splits.train.images, splits.test.images])  # (30, 1, 8, 8), no noise added
    expected = load_mae(mae_run).forward_features(clean, layers=[5])["block.5"].mean(dim=1)  # (30, 192)
    assert torch.allclose(bank.pooled[(0, "block.5")], expected, atol=1e-5)
    with pytest.raises(ValueError, match=r"timesteps: expected integers in \[0, 1\)"):
        extract_features(mae_run, None, [0, 500], None, 20, progress=False)


def test_config_refuses_a_policy_or_labels_the_mae_cannot_use(tmp_path):
    with pytest.raises(ConfigError, match="config field 'policy': objective 'mae' has no choice of timestep"):
        tiny(tmp_path, objective="mae")
    with pytest.raises(ConfigError, match="config field 'conditional'"):
        tiny(tmp_path, objective="mae", conditional=True, **MAE_POLICY)
    with pytest.raises(ConfigError, match="config field 'objective': expected one of denoise, mae"):
        tiny(tmp_path, objective="simclr")
    cfg = tiny(tmp_path, ema_warmup=False)  # runs written before `objective` (and the later fields) keep their hash
    kept_out = ("out", "resume", "device", "steps", "compile", *HASHED_WHEN_SET)
    before = {k: v for k, v in cfg.to_dict().items() if k not in kept_out}
    assert cfg.hash() == hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:16]
    assert tiny(tmp_path).hash() != tiny(tmp_path, objective="mae", **MAE_POLICY).hash()
