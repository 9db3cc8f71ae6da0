"""load_dit / save_dit: project safetensors and run dirs, official DiT .pt files, diffusers folders, bad inputs."""
import argparse
import hashlib
import json

import pytest
import torch
from safetensors.torch import save_file

from aselect_core.model import CheckpointError, DiT, build_dit, load_dit, save_dit


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def randomize(model: DiT, seed: int) -> DiT:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval()


def tiny(seed: int = 0, **kw) -> DiT:
    return randomize(build_dit("DiT-T/4", input_size=16, num_classes=10, **kw), seed)


def inputs(batch: int = 3, size: int = 16, classes: int = 10, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 4, size, size, generator=g), torch.randint(0, 1000, (batch,), generator=g),
            torch.randint(0, classes + 1, (batch,), generator=g))  # labels include the null class


def same_outputs(a: DiT, b: DiT) -> bool:
    x, t, y = inputs()
    with torch.no_grad():
        return torch.equal(a(x, t, y), b(x, t, y))


def prefixed(prefix: str, model: DiT) -> dict:
    return {f"{prefix}.{k}": v.contiguous() for k, v in model.state_dict().items()}


def dit_metadata(model: DiT) -> dict:
    return {"aselect.dit": json.dumps({"name": model.config_name, **model.config})}


# ------------------------------------------------------------------------------------------- project format

def test_save_load_round_trip_is_bit_identical(tmp_path):
    model = tiny(learn_sigma=False)
    path = save_dit(model, tmp_path / "sub" / "dit.safetensors")
    loaded = load_dit(path)
    assert same_outputs(model, loaded)
    assert loaded.config == model.config and loaded.config_name == "DiT-T/4" and not loaded.training
    assert not loaded.pos_embed.requires_grad and loaded.blocks[0].attn.qkv.weight.requires_grad
    assert [p.name for p in tmp_path.joinpath("sub").iterdir()] == ["dit.safetensors"]  # no temp file left


def test_trainer_checkpoint_picks_ema_or_model_and_run_dir(tmp_path):
    model, ema = tiny(seed=0), tiny(seed=1)
    ckpt = tmp_path / "run" / "checkpoints" / "step_0000040.safetensors"
    ckpt.parent.mkdir(parents=True)
    save_file({**prefixed("model", model), **prefixed("ema", ema), "optim.step": torch.zeros(1)}, ckpt,
              metadata=dit_metadata(model))
    (tmp_path / "run" / "latest.json").write_text(json.dumps({"checkpoint": "checkpoints/step_0000040.safetensors"}))
    assert same_outputs(load_dit(ckpt), ema) and same_outputs(load_dit(ckpt, weights="model"), model)
    # a run dir's checkpoint is verified against its sidecar's sha256 before it is read, as training resumes it
    one_line_error(tmp_path / "run", "step_0000040.safetensors: no sidecar step_0000040.json")
    sidecar = {"step": 40, "sha256": hashlib.sha256(ckpt.read_bytes()).hexdigest()}
    ckpt.with_suffix(".json").write_text(json.dumps(sidecar))
    assert same_outputs(load_dit(tmp_path / "run"), ema)
    ckpt.write_bytes(ckpt.read_bytes()[:-100])  # truncated after its sidecar was written
    one_line_error(tmp_path / "run", "step_0000040.safetensors: sha256 does not match its sidecar")
    only_model = tmp_path / "only_model.safetensors"
    save_file(prefixed("model", model), only_model, metadata=dit_metadata(model))
    assert same_outputs(load_dit(only_model, weights="ema"), model)  # falls back to the other weights


def test_safetensors_without_metadata_infers_config(tmp_path):
    model = tiny(learn_sigma=False)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "bare.safetensors")
    loaded = load_dit(tmp_path / "bare.safetensors")
    assert same_outputs(model, loaded)
    assert {k: loaded.config[k] for k in model.config} == model.config and loaded.config_name == "DiT-T/4"


# ------------------------------------------------------------------------------------------ official DiT .pt

def test_official_pt_bare_and_training_dict(tmp_path):
    model, ema = tiny(seed=0), tiny(seed=1)
    torch.save(ema.state_dict(), tmp_path / "bare.pt")
    assert same_outputs(load_dit(tmp_path / "bare.pt"), ema)
    torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "opt": {"state": {}, "param_groups": []},
                "args": argparse.Namespace(model="DiT-T/4", epochs=1)}, tmp_path / "0000040.pt")
    assert same_outputs(load_dit(tmp_path / "0000040.pt"), ema)
    loaded = load_dit(tmp_path / "0000040.pt", weights="model")
    assert same_outputs(loaded, model) and loaded.config_name == "DiT-T/4" and loaded.config["num_classes"] == 10


def test_num_heads_override_for_non_paper_width(tmp_path):
    model = randomize(DiT(input_size=8, patch_size=2, hidden_size=64, depth=2, num_heads=4, num_classes=5), 0)
    torch.save(model.state_dict(), tmp_path / "w64.pt")
    with pytest.raises(CheckpointError, match="cannot infer num_heads for hidden size 64; pass load_dit"):
        load_dit(tmp_path / "w64.pt")
    loaded = load_dit(tmp_path / "w64.pt", num_heads=4)
    x, t, y = inputs(size=8, classes=5)
    assert torch.equal(loaded(x, t, y), model(x, t, y)) and loaded.config_name is None


class Payload:
    """A pickled object whose unpickling would create a file: weights_only must refuse to run it."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_pickled_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"model": tiny().state_dict(), "extra": Payload(marker)}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match=r"evil\.pt: refused or failed by torch.load\(weights_only=True\)") as e:
        load_dit(tmp_path / "evil.pt")
    assert "Unsupported global" in str(e.value) and "\n" not in str(e.value) and not marker.exists()


# ------------------------------------------------------------------------------------------------ diffusers

def diffusers_dit(seed: int = 0, tie: bool = True):
    """A small DiTTransformer2DModel; `tie` shares block 0's embedder, as in checkpoints converted from DiT."""
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(seed)
    model = diffusers.DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=16, in_channels=4,
                                            out_channels=8, num_layers=2, sample_size=8, patch_size=2,
                                            num_embeds_ada_norm=10).eval()
    if tie:
        for block in model.transformer_blocks[1:]:
            block.norm1.emb.load_state_dict(model.transformer_blocks[0].norm1.emb.state_dict())
    return model


@pytest.mark.parametrize("layout,safe", [("model", True), ("model", False), ("pipeline", True)])
def test_diffusers_folder_matches_diffusers_forward(tmp_path, layout, safe):
    ref = diffusers_dit()
    ref.save_pretrained(tmp_path / "transformer" if layout == "pipeline" else tmp_path, safe_serialization=safe)
    loaded = load_dit(tmp_path)
    assert loaded.config | {"depth": 2, "hidden_size": 32, "num_heads": 2, "learn_sigma": True, "num_classes": 10,
                            "time_freq_shift": 1.0, "mlp_norm_eps": 1e-5} == loaded.config
    x, t, y = inputs(batch=4, size=8)
    with torch.no_grad():
        expected = ref(x, t, y).sample
        assert (loaded(x, t, y) - expected).abs().max().item() <= 1e-5  # measured: 0.0 (same fp32 ops)
        # diffusers' timestep frequencies differ from the reference's: the switch is what makes them agree
        ref_freqs = DiT(**{**loaded.config, "time_freq_shift": 0.0})
        ref_freqs.load_state_dict(loaded.state_dict())
        assert (ref_freqs.eval()(x, t, y) - expected).abs().max().item() > 1e-3


def test_diffusers_untied_block_embedders_are_refused(tmp_path):
    diffusers_dit(tie=False).save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match=r"transformer_blocks\.1\.norm1\.emb\..* differs from block 0's"):
        load_dit(tmp_path)


@pytest.mark.parametrize("field,value,match", [("activation_fn", "geglu", "field 'activation_fn' must be"),
                                               ("out_channels", 5, "out_channels must be in_channels or twice")])
def test_diffusers_config_that_is_not_a_dit_is_refused(tmp_path, field, value, match):
    diffusers_dit().save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, field: value}))
    one_line_error(tmp_path, match)


# ----------------------------------------------------------------------------------------------- bad inputs

def one_line_error(path, match, **kw):
    with pytest.raises(ValueError, match=match) as e:
        load_dit(path, **kw)
    assert "\n" not in str(e.value)


def test_bad_inputs_are_one_line_errors(tmp_path):
    one_line_error(tmp_path / "nope.safetensors", r"nope\.safetensors: checkpoint not found")
    (tmp_path / "weights.txt").write_text("x")
    one_line_error(tmp_path / "weights.txt", r"weights\.txt: unknown checkpoint type; expected \.safetensors")
    (tmp_path / "empty").mkdir()
    one_line_error(tmp_path / "empty", "neither a run dir")
    (tmp_path / "junk.pt").write_bytes(b"not a pickle")
    one_line_error(tmp_path / "junk.pt", r"junk\.pt: refused or failed by torch\.load")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 16)
    one_line_error(tmp_path / "junk.safetensors", "not a readable safetensors file")
    one_line_error(tmp_path / "junk.safetensors", "weights must be one of", weights="best")


def test_shape_and_key_mismatches_are_one_line_errors(tmp_path):
    small, wide = tiny(), build_dit("DiT-T/4", input_size=16, num_classes=12)
    save_file({k: v.contiguous() for k, v in small.state_dict().items()}, tmp_path / "a.safetensors",
              metadata=dit_metadata(wide))  # metadata says 12 classes, tensors have 10
    one_line_error(tmp_path / "a.safetensors", r"a\.safetensors: tensor 'y_embedder.embedding_table.weight' "
                   r"has shape \(11, 192\), expected \(13, 192\)")
    state = small.state_dict()
    del state["blocks.3.mlp.fc2.bias"]
    torch.save(state, tmp_path / "b.pt")
    one_line_error(tmp_path / "b.pt", r"b\.pt: missing tensor 'blocks.3.mlp.fc2.bias'")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "c.pt")
    one_line_error(tmp_path / "c.pt", r"c\.pt: expected DiT tensors, missing 'pos_embed'")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "latest.json").write_text("{}")
    one_line_error(tmp_path / "run", "latest.json: expected a 'checkpoint' entry")
