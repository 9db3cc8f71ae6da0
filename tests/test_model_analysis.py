"""aselect analyze --model/--vae: a bare official-format latent DiT and a tiny AutoencoderKL, nothing downloaded."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from app.cli import main
from aselect_core.model import build_dit
from aselect_core.model.codec import load_codec

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def tiny_vae(folder, latent_channels: int = 4):
    """An AutoencoderKL with 4 levels (downsampling 8) and 8 channels, saved with save_pretrained."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(8, 8, 8, 8),
                        layers_per_block=1, latent_channels=latent_channels, norm_num_groups=4, sample_size=256)
    vae.save_pretrained(folder)
    return folder


def image_folder(root, n_per_class: int = 18, size: int = 256):
    """Two classes of PNGs: dark and bright noisy squares."""
    rng = np.random.default_rng(0)
    for c, level in enumerate((60, 190)):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(n_per_class):
            img = np.clip(rng.normal(level, 30, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / f"class{c}" / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def latent_setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("latent")
    dit = build_dit("DiT-T/2", input_size=32, in_channels=4, num_classes=1000, learn_sigma=True)
    torch.save(dit.state_dict(), tmp / "dit.pt")  # the released format: a bare state dict
    return tmp / "dit.pt", tiny_vae(tmp / "vae"), image_folder(tmp / "images")


def test_analyze_model_with_vae_writes_probe_table(latent_setup, tmp_path):
    dit, vae, images = latent_setup
    out = tmp_path / "out"
    assert main(["analyze", "--model", str(dit), "--vae", str(vae), "--data", f"folder:{images}", "--image-size",
                 "256", "--timesteps", "0,500", "--layers", "0,3", "--n-images", "24", "--out", str(out)]) == 0
    probe = pd.read_parquet(out / "analysis" / "probe.parquet")
    assert set(probe.timestep) == {0, 500} and {"block.0", "block.3", "pixels"} <= set(probe.layer)
    summary = json.loads((out / "analysis" / "summary.json").read_text())
    assert summary["best"]["layer"] in {"block.0", "block.3"}
    model = json.loads((out / "model.json").read_text())
    assert model["vae"]["identity"] == load_codec(vae).identity and model["image_size"] == 256


def test_codec_encodes_scaled_posterior_mean(latent_setup):
    _, vae, _ = latent_setup
    codec = load_codec(vae)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    z = codec.encode(x)
    assert z.shape == (2, 4, 8, 8)
    with torch.no_grad():
        ref = codec.vae.encode(x).latent_dist.mean * codec.vae.config.scaling_factor
    assert torch.allclose(z, ref)


@pytest.mark.parametrize("case, message", [
    ("channels", "latents have 8 channels but the DiT takes in_channels=4"),
    ("size", "is not a multiple of the VAE's downsampling factor 8"),
    ("grid", "encodes to 16×16 latents but the DiT takes 32×32"),
    ("missing", "no such VAE folder"),
])
def test_bad_inputs_one_line_errors(latent_setup, tmp_path, capsys, case, message):
    dit, vae, images = latent_setup
    size = {"size": "250", "grid": "128"}.get(case, "256")
    vae_path = {"channels": tiny_vae(tmp_path / "vae8", latent_channels=8), "missing": tmp_path / "nope"}.get(case, vae)
    assert main(["analyze", "--model", str(dit), "--vae", str(vae_path), "--data", f"folder:{images}",
                 "--image-size", size, "--timesteps", "0", "--n-images", "8", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_dit_pipeline_folder_loads_transformer_and_vae(latent_setup, tmp_path):
    """A DiTPipeline-style folder (transformer/ + vae/) needs no --vae; the VAE enters the bank's dataset key."""
    from diffusers import DiTTransformer2DModel

    _, vae, images = latent_setup
    torch.manual_seed(0)
    ref = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=8,
                                num_layers=2, sample_size=32, patch_size=2, num_embeds_ada_norm=1000)
    for block in ref.transformer_blocks[1:]:  # converted DiT checkpoints share one embedder
        block.norm1.emb.load_state_dict(ref.transformer_blocks[0].norm1.emb.state_dict())
    ref.save_pretrained(tmp_path / "pipe" / "transformer")
    tiny_vae(tmp_path / "pipe" / "vae")
    out = tmp_path / "out"
    assert main(["analyze", "--model", str(tmp_path / "pipe"), "--data", f"folder:{images}", "--timesteps", "0,900",
                 "--n-images", "24", "--out", str(out)]) == 0
    model = json.loads((out / "model.json").read_text())
    assert model["image_size"] == 256 and model["vae"]["path"].endswith("pipe")
    assert set(pd.read_parquet(out / "analysis" / "probe.parquet").layer) == {"block.0", "block.1", "pixels"}
