"""Feature banks: keys and shapes, seeded reproducibility, per-image noise, the cache, the null class, errors."""
from __future__ import annotations

import pytest
import torch

from analysis.features import extract_features, image_noise, probe_splits, stratified_order
from aselect_core.datasets import load_dataset
from aselect_core.diffusion import NoiseSchedule
from aselect_core.model import DiT, build_dit


@pytest.fixture(scope="session")
def run(tiny_run):
    return tiny_run(steps=10)


def tiny(seed: int = 0) -> DiT:
    torch.manual_seed(seed)
    model = build_dit("DiT-T/4", input_size=8, in_channels=1, num_classes=10)
    for p in model.parameters():  # adaLN-Zero init makes every block the identity; perturb it
        p.data.add_(0.05 * torch.randn_like(p))
    return model


def extract(model, **kw):
    args = dict(dataset="digits", timesteps=[0, 500], layers=[1, 3], n_images=40, seed=0, progress=False,
                cache=False)
    return extract_features(model, **{**args, **kw})


def test_bank_keys_shapes_and_counted_passes():
    bank = extract(tiny(), kinds=("block", "attn"), tokens=True, n_test=10)
    assert bank.layers == ["block.1", "block.1.attn", "block.3", "block.3.attn"]
    assert bank.keys() == [(t, k) for t in (0, 500) for k in bank.layers]
    assert set(bank.pooled) == set(bank.tokens) == set(bank.keys())
    assert bank.pooled[(0, "block.1")].shape == (50, 192) and bank.tokens[(500, "block.3")].shape == (50, 4, 192)
    assert torch.allclose(bank.tokens[(0, "block.3")].mean(dim=1), bank.pooled[(0, "block.3")])
    assert bank.grid == (2, 2) and bank.n_train == 40 and bank.n_test == 10
    assert bank.split == ["train"] * 40 + ["test"] * 10
    assert bank.image_passes == 50 * 2  # one per image per timestep, however deep the forward went
    assert bank.masks is None and bank.meta["condition_on_labels"] is False and bank.wall_seconds > 0
    assert torch.bincount(bank.labels[:40], minlength=10).min() >= 3  # stratified: every class present


def test_train_and_test_images_are_disjoint_and_stratified():
    data = load_dataset("digits", "train", 8)
    splits = probe_splits(data, 100, seed=1, n_test=50)
    assert not set(splits.train_rows.tolist()) & set(splits.test_rows.tolist())
    assert torch.bincount(splits.train.labels, minlength=10).min() >= 9
    order = stratified_order(data.labels, 0)
    assert sorted(order.tolist()) == list(range(len(data)))


def test_same_seed_same_features_other_seed_other_and_batching_does_not_matter():
    model = tiny()
    a, b = extract(model), extract(model, batch_size=7)
    c = extract(model, seed=1)
    for key in a.keys():
        assert torch.allclose(a.pooled[key], b.pooled[key], atol=1e-5)
    assert not torch.allclose(a.pooled[(500, "block.3")], c.pooled[(500, "block.3")])


def test_each_image_keeps_its_noise_across_timesteps_and_batches():
    rows = torch.tensor([5, 9, 2])
    n = image_noise((1, 8, 8), rows, seed=3, split="train")
    assert torch.equal(n[1], image_noise((1, 8, 8), torch.tensor([9]), seed=3, split="train")[0])
    assert not torch.equal(n[1], image_noise((1, 8, 8), torch.tensor([9]), seed=3, split="test")[0])
    splits = probe_splits(load_dataset("digits", "train", 8), 20, seed=3)
    s = NoiseSchedule()
    eps = splits.noise("train")
    for t in (10, 700):
        abar = s.alphas_cumprod[t].float()
        expected = abar.sqrt() * splits.train.images + (1 - abar).sqrt() * eps
        assert torch.allclose(splits.noisy("train", t, s), expected, atol=1e-6)


def test_second_call_loads_from_cache_without_running_the_model(run, monkeypatch):
    calls = []
    original = DiT.forward_features

    def counted(self, *a, **k):
        calls.append(1)
        return original(self, *a, **k)

    monkeypatch.setattr(DiT, "forward_features", counted)
    args = dict(timesteps=[0, 300], layers=None, n_images=30, seed=0, progress=False, tokens=True)
    first = extract_features(run, None, **args)
    assert len(calls) == 2 * 2 and not first.meta["cached"]  # 2 splits (1 batch each) x 2 timesteps
    files = sorted(p.suffix for p in (run / "analysis" / "features").iterdir())
    assert files == [".json", ".safetensors"]
    second = extract_features(run, None, **args)
    assert len(calls) == 4 and second.meta["cached"]
    assert second.image_passes == first.image_passes == 2 * 45
    for key in first.keys():
        assert torch.equal(first.pooled[key], second.pooled[key]) and torch.equal(first.tokens[key], second.tokens[key])
    assert torch.equal(first.labels, second.labels) and torch.equal(first.is_test, second.is_test)
    extract_features(run, None, **{**args, "seed": 1})  # another key: runs the model again
    assert len(calls) == 8


def test_null_class_by_default_true_labels_only_on_request():
    model = tiny()
    base_default = extract(model)
    base_cond = extract(model, condition_on_labels=True)
    with torch.no_grad():
        model.y_embedder.embedding_table.weight[:10] = 100.0  # every real class row huge, null row untouched
    default = extract(model)
    cond = extract(model, condition_on_labels=True)
    assert cond.meta["condition_on_labels"] is True
    for key in default.keys():
        assert torch.equal(default.pooled[key], base_default.pooled[key])
        assert not torch.allclose(cond.pooled[key], base_cond.pooled[key])


def test_one_line_errors(run):
    with pytest.raises(ValueError, match=r"^timesteps: expected integers in \[0, 1000\), got \[1000\]"):
        extract(tiny(), timesteps=[0, 1000])
    with pytest.raises(ValueError, match=r"layer 7 out of range"):
        extract(tiny(), layers=[7])
    with pytest.raises(ValueError, match=r"^dataset: required when"):
        extract(tiny(), dataset=None)
    with pytest.raises(ValueError, match=r"^dataset: images \(1, 16, 16\) do not fit"):
        extract(tiny(), dataset=load_dataset("digits", "train", 16))
    with pytest.raises(ValueError, match=r"is neither a run dir"):
        extract(run / "nothing-here")
