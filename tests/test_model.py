"""The DiT architecture: reference shapes and keys, forward_features semantics, conditioning, configs."""
import math

import numpy as np
import pytest
import torch

from aselect_core.model import (DIT_CONFIGS, DiT, LayerKey, build_dit, dit_depth, layer_order, resolve_block,
                                sincos_pos_embed_2d, timestep_embedding)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def randomize(model: DiT, seed: int = 0) -> DiT:
    """Non-zero weights everywhere (the reference init zeroes adaLN and the output layer)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model


def tiny(**kw) -> DiT:
    torch.manual_seed(0)
    return randomize(build_dit("DiT-T/4", input_size=16, num_classes=10, **kw)).eval()


def inputs(batch: int = 3, size: int = 16, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 4, size, size, generator=g)
    t = torch.randint(0, 1000, (batch,), generator=g)
    y = torch.randint(0, 10, (batch,), generator=g)
    return x, t, y


@pytest.mark.parametrize("name,learn_sigma,out_ch", [("DiT-T/4", True, 8), ("DiT-T/2", False, 4), ("DiT-T/8", True, 8)])
def test_forward_shapes(name, learn_sigma, out_ch):
    model = build_dit(name, input_size=16, num_classes=10, learn_sigma=learn_sigma).eval()
    x, t, y = inputs()
    assert model(x, t, y).shape == (3, out_ch, 16, 16)
    assert model.config_name == name and model.config["learn_sigma"] is learn_sigma


def test_reference_init_is_adaln_zero():
    model = build_dit("DiT-T/4", input_size=16, num_classes=10)
    x, t, y = inputs()
    assert torch.count_nonzero(model(x, t, y)) == 0  # zeroed final layer
    assert all(torch.count_nonzero(b.adaLN_modulation[1].weight) == 0 for b in model.blocks)
    assert model.y_embedder.embedding_table.weight.std().item() == pytest.approx(0.02, rel=0.2)


def test_forward_features_keys_and_shapes():
    model = tiny()
    x, t, y = inputs()
    feats = model.forward_features(x, t, y, layers=[0, -1], kinds=("embed", "block", "attn", "mlp"))
    assert set(feats) == {"embed", "block.0", "block.0.attn", "block.0.mlp", "block.5", "block.5.attn", "block.5.mlp"}
    assert all(f.shape == (3, 16, 192) for f in feats.values())  # (B, N=(16/4)^2, D)
    assert set(model.forward_features(x, t, y)) == {f"block.{i}" for i in range(6)}


def test_features_are_forwards_residual_stream():
    model = tiny()
    x, t, y = inputs()
    feats = model.forward_features(x, t, y, kinds=("embed", "block", "attn", "mlp"))
    _, c = model.embed(x, t, y)
    out = model.unpatchify(model.final_layer(feats["block.5"], c))
    assert torch.equal(out, model(x, t, y))
    # block.i = block.{i-1} + block.i.attn + block.i.mlp, and block.0 starts from "embed"
    prev = feats["embed"]
    for i in range(6):
        torch.testing.assert_close(prev + feats[f"block.{i}.attn"] + feats[f"block.{i}.mlp"], feats[f"block.{i}"])
        prev = feats[f"block.{i}"]


def test_forward_features_stops_after_deepest_layer():
    model = tiny()
    ran = []
    for i, block in enumerate(model.blocks):  # record every block that runs
        block.forward_parts = (lambda f, i: lambda *a: (ran.append(i), f(*a))[1])(block.forward_parts, i)
    x, t, y = inputs()
    model.forward_features(x, t, y, layers=[2, 1])
    assert ran == [0, 1, 2]
    ran.clear()
    assert set(model.forward_features(x, t, y, kinds=("embed",))) == {"embed"} and ran == []


def test_forward_features_rejects_bad_layers_and_kinds():
    model = tiny()
    x, t, y = inputs()
    with pytest.raises(ValueError, match="layer 6 out of range for depth 6"):
        model.forward_features(x, t, y, layers=[6])
    with pytest.raises(ValueError, match="unknown kinds \\['resid'\\]"):
        model.forward_features(x, t, y, kinds=("resid",))


def test_pos_embed_is_fixed_2d_sincos():
    model = tiny()
    assert not model.pos_embed.requires_grad and model.pos_embed.shape == (1, 16, 192)
    assert "pos_embed" not in {n for n, p in model.named_parameters() if p.requires_grad}

    def sincos_1d(dim, pos):  # MAE's numpy formula
        omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    grid = np.stack(np.meshgrid(np.arange(4, dtype=np.float32), np.arange(4, dtype=np.float32)))  # w first
    ref = np.concatenate([sincos_1d(96, grid[0]), sincos_1d(96, grid[1])], axis=1)
    np.testing.assert_allclose(model.pos_embed[0].numpy(), ref.astype(np.float32), atol=1e-6)
    assert torch.equal(sincos_pos_embed_2d(192, 4), model.pos_embed[0])


def test_timestep_embedding_is_cos_then_sin():
    emb = timestep_embedding(torch.tensor([0.0, 3.0]), 8)
    freqs = torch.exp(-math.log(10000) * torch.arange(4) / 4)
    torch.testing.assert_close(emb[1], torch.cat([torch.cos(3 * freqs), torch.sin(3 * freqs)]))
    assert torch.equal(emb[0], torch.tensor([1.0] * 4 + [0.0] * 4))


def test_y_none_is_the_null_class():
    model = tiny()
    x, t, _ = inputs()
    null = torch.full((3,), 10)
    assert torch.equal(model(x, t, None), model(x, t, null))
    assert torch.equal(model.forward_features(x, t)["block.2"], model.forward_features(x, t, null)["block.2"])
    no_null = build_dit("DiT-T/4", input_size=16, num_classes=10, class_dropout_prob=0.0)
    assert no_null.y_embedder.embedding_table.num_embeddings == 10
    with pytest.raises(ValueError, match="y=None needs the null-class row"):
        no_null(x, t, None)


def test_label_dropout_only_in_training():
    emb = tiny(class_dropout_prob=0.5).y_embedder
    labels = torch.arange(10).repeat(20)  # (200,)
    torch.manual_seed(0)
    dropped = emb.token_drop(labels)
    assert 60 < (dropped == 10).sum() < 140 and torch.equal(dropped[dropped != 10], labels[dropped != 10])
    torch.manual_seed(0)
    assert torch.equal(emb(labels, train=True), emb.embedding_table(dropped))
    assert torch.equal(emb(labels, train=False), emb.embedding_table(labels))
    force = (torch.arange(200) % 2).long()
    assert torch.equal(emb.token_drop(labels, force), torch.where(force == 1, 10, labels))


def test_forward_with_cfg_guides_eps_only():
    model = tiny()
    x, t, _ = inputs(batch=2)
    x, t = torch.cat([x[:1], x[:1]]), torch.cat([t[:1], t[:1]])
    y = torch.tensor([3, 10])
    out = model.forward_with_cfg(x, t, y, cfg_scale=4.0)
    raw = model(x, t, y)
    torch.testing.assert_close(out[0, :4], raw[1, :4] + 4.0 * (raw[0, :4] - raw[1, :4]))
    assert torch.equal(out[0, :4], out[1, :4]) and torch.equal(out[:, 4:], raw[:, 4:])


def test_configs_cover_the_paper_and_tiny_sizes():
    paper = {f"DiT-{s}/{p}" for s in ("XL", "L", "B", "S") for p in (2, 4, 8)}
    assert paper | {f"DiT-{s}/{p}" for s in "TN" for p in (2, 4, 8)} == set(DIT_CONFIGS)
    with torch.device("meta"):
        shapes = {n: (m.depth, m.config["hidden_size"], m.num_heads, m.patch_size)
                  for n, m in ((n, DIT_CONFIGS[n](input_size=16)) for n in ("DiT-L/4", "DiT-B/8", "DiT-S/2"))}
    assert shapes == {"DiT-L/4": (24, 1024, 16, 4), "DiT-B/8": (12, 768, 12, 8), "DiT-S/2": (12, 384, 6, 2)}
    with pytest.raises(ValueError, match="unknown DiT config 'DiT-Q/2'; expected one of DiT-XL/2, "):
        build_dit("DiT-Q/2")


def test_dit_xl2_keys_and_parameter_count():
    with torch.device("meta"):
        model = DIT_CONFIGS["DiT-XL/2"]()
    sd = model.state_dict()
    assert len(sd) == 292
    assert sum(p.numel() for p in model.parameters()) == 675_129_632  # the paper's 675M
    expected = {"pos_embed": (1, 256, 1152), "x_embedder.proj.weight": (1152, 4, 2, 2),
                "y_embedder.embedding_table.weight": (1001, 1152), "blocks.27.adaLN_modulation.1.weight": (6912, 1152),
                "final_layer.linear.weight": (32, 1152), "blocks.0.attn.qkv.weight": (3456, 1152),
                "t_embedder.mlp.0.weight": (1152, 256), "t_embedder.mlp.2.weight": (1152, 1152)}
    assert {k: tuple(sd[k].shape) for k in expected} == expected
    assert {k.split(".", 2)[2] for k in sd if k.startswith("blocks.0.")} == {
        f"{m}.{w}" for m in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2", "adaLN_modulation.1")
        for w in ("weight", "bias")}


def test_wrong_input_size_is_one_line_error():
    with pytest.raises(ValueError, match=r"DiT input: expected \(B, C, 16, 16\), got \(1, 4, 8, 8\)"):
        tiny()(torch.zeros(1, 4, 8, 8), torch.zeros(1, dtype=torch.long), None)


# -- layer keys ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, index, kind", [("block.3", 3, "block"), ("block.10.mlp", 10, "mlp"),
                                               ("block.0.attn", 0, "attn"), ("embed", -1, "embed"),
                                               ("pixels", -1, "pixels")])
def test_layer_key_round_trips_its_text(text, index, kind):
    key = LayerKey.parse(text)
    assert (key.index, key.kind) == (index, kind) and str(key) == text and LayerKey.parse(key) is key


def test_layer_keys_name_forward_features_output_and_sort_by_depth_then_kind():
    model = build_dit("DiT-T/4", input_size=8, in_channels=1, num_classes=2)
    feats = model.forward_features(torch.randn(1, 1, 8, 8), torch.zeros(1, dtype=torch.long), layers=[0, 2],
                                   kinds=("embed", "block", "attn", "mlp"))
    keys = sorted(feats, key=layer_order)
    assert keys == ["embed", "block.0", "block.0.attn", "block.0.mlp", "block.2", "block.2.attn", "block.2.mlp"]
    assert all(str(LayerKey.parse(k)) == k for k in keys)


def test_resolve_block_takes_ints_negatives_and_keys_and_names_bad_ones():
    assert [resolve_block(x, 6) for x in (3, -1, "block.3", "block.-1", "2")] == [3, 5, 3, 5, 2]
    for bad in (6, -7, "block.x", "embed"):
        with pytest.raises(ValueError, match=r"layer: expected a block index in \[-6, 6\) or 'block.i', got"):
            resolve_block(bad, 6)
    with pytest.raises(ValueError, match="kind: expected one of"):
        LayerKey.block(1, "qkv")
    assert dit_depth("DiT-T/4") == 6 and dit_depth("DiT-XL/2") == 28
    with pytest.raises(ValueError, match="unknown DiT config 'DiT-Q/4'"):
        dit_depth("DiT-Q/4")


@pytest.mark.parametrize("name, size, channels", [("DiT-T/2", 16, 3), ("DiT-S/4", 16, 4)])
def test_forward_matches_an_independent_reference_implementation(name, size, channels):
    """bench/reference_dit.py (explicit-softmax attention, separate modules, no taps) on the same official-format
    weights: the project's forward and its feature taps agree to float tolerance — the pin issue 16's speed work
    must keep."""
    from bench.reference_dit import ReferenceDiT

    torch.manual_seed(0)
    ours = build_dit(name, input_size=size, in_channels=channels, num_classes=10)
    for p in ours.parameters():  # adaLN-Zero starts every block as the identity: perturb it
        p.data.add_(0.02 * torch.randn_like(p))
    c = ours.config
    ref = ReferenceDiT(size, c["patch_size"], channels, c["hidden_size"], c["depth"], c["num_heads"], 10)
    ref.load_state_dict(ours.state_dict(), strict=True)
    x, t, y = torch.randn(3, channels, size, size), torch.tensor([0, 400, 999]), torch.tensor([1, 10, 4])
    with torch.no_grad():
        torch.testing.assert_close(ours(x, t, y), ref(x, t, y), rtol=1e-4, atol=1e-5)
        taps = ours.forward_features(x, t, y, layers=[1, c["depth"] - 1])
        for depth in (1, c["depth"] - 1):
            torch.testing.assert_close(taps[f"block.{depth}"], ref.features(x, t, y, depth + 1), rtol=1e-4, atol=1e-5)


def test_branch_taps_leave_the_residual_stream_unchanged():
    """The stream is one fused x + gate * branch per branch whether or not the gated branches are tapped, so
    asking for "attn"/"mlp" changes no "block" feature (bit for bit) and forward_features matches forward."""
    model = tiny()
    x, t, y = inputs()
    with torch.no_grad():
        plain = model.forward_features(x, t, y, layers=[2, 5])
        tapped = model.forward_features(x, t, y, layers=[2, 5], kinds=("block", "attn", "mlp"))
    assert all(torch.equal(plain[k], tapped[k]) for k in plain)
    assert set(tapped) - set(plain) == {"block.2.attn", "block.2.mlp", "block.5.attn", "block.5.mlp"}


def test_compiled_blocks_compute_the_same_and_keep_the_reference_keys():
    """compile_blocks (the opt-in torch.compile path) changes neither outputs, taps nor state-dict keys; the eager
    backend traces the same graph without a C++ toolchain, so the test runs in seconds."""
    from aselect_core.model import build_mae, compile_blocks

    eager, x, (_, t, y) = tiny(), inputs()[0], inputs()
    compiled = compile_blocks(tiny(), backend="eager")
    assert list(compiled.state_dict()) == list(eager.state_dict())
    with torch.no_grad():
        assert torch.allclose(compiled(x, t, y), eager(x, t, y), atol=1e-6)
        taps = {k: compiled.forward_features(x, t, y, layers=[1, 3], kinds=("block", "attn", "mlp"))
                for k in range(2)}  # the second call reuses the compiled graph
        want = eager.forward_features(x, t, y, layers=[1, 3], kinds=("block", "attn", "mlp"))
    assert all(torch.allclose(taps[1][k], want[k], atol=1e-6) for k in want) and taps[0].keys() == want.keys()
    torch.manual_seed(0)
    mae = build_mae("DiT-T/4", input_size=16, in_channels=4).eval()
    compiled_mae = compile_blocks(build_mae("DiT-T/4", input_size=16, in_channels=4).eval(), backend="eager")
    compiled_mae.load_state_dict(mae.state_dict())
    with torch.no_grad():
        assert torch.allclose(compiled_mae.forward_features(x)["block.5"], mae.forward_features(x)["block.5"],
                              atol=1e-6)
