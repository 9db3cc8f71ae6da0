"""Latent codecs: encode images to the latent space a latent DiT was trained in (a diffusers AutoencoderKL).

`load_codec(path)` reads an `AutoencoderKL` folder (`config.json` + safetensors weights) or a `DiTPipeline`
folder holding `vae/`; nothing executes pickled code (`use_safetensors=True`). `LatentCodec.encode` maps
images in [-1, 1] to the posterior mean times the VAE's `scaling_factor` (deterministic, so no seed enters).
`LatentCodec.identity` (the weights' sha256 and the scaling factor) goes into feature-bank cache keys.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import Tensor

from aselect_core.io import CheckpointError


class LatentCodec:
    """A frozen AutoencoderKL used as an image -> latent encoder."""

    def __init__(self, vae: torch.nn.Module, identity: str) -> None:
        self.vae = vae.eval().requires_grad_(False)
        self.identity = identity
        cfg = vae.config
        self.in_channels: int = int(cfg.in_channels)
        self.latent_channels: int = int(cfg.latent_channels)
        self.factor: int = 2 ** (len(cfg.block_out_channels) - 1)  # spatial downsampling of the encoder
        self.scaling_factor: float = float(cfg.scaling_factor)

    def latent_size(self, image_size: int) -> int:
        """Side of the latent of an image_size × image_size image; a one-line error when it does not tile."""
        if image_size % self.factor:
            raise ValueError(f"image_size: {image_size} is not a multiple of the VAE's downsampling factor "
                             f"{self.factor}")
        return image_size // self.factor

    def check_model(self, in_channels: int, input_size: int, image_size: int) -> None:
        """Refuse (one line) a DiT whose input the codec's latents of image_size images do not match."""
        if self.latent_channels != in_channels:
            raise ValueError(f"vae: its latents have {self.latent_channels} channels but the DiT takes "
                             f"in_channels={in_channels}")
        if (side := self.latent_size(image_size)) != input_size:
            raise ValueError(f"image_size: {image_size} px encodes to {side}×{side} latents but the DiT takes "
                             f"{input_size}×{input_size} (use --image-size {input_size * self.factor})")

    @torch.inference_mode()
    def encode(self, images: Tensor, batch_size: int = 32, device: str = "cpu") -> Tensor:
        """(N, C, H, W) in [-1, 1] -> (N, latent_channels, H/f, W/f) scaled posterior means, on the CPU."""
        if images.shape[1] == 1 and self.in_channels == 3:  # greyscale data: replicate to RGB
            images = images.expand(-1, 3, -1, -1)
        if images.shape[1] != self.in_channels:
            raise ValueError(f"images: {images.shape[1]} channels but the VAE takes {self.in_channels}")
        self.vae.to(device)
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        out = []
        for start in range(0, len(images), batch_size):
            x = images[start:start + batch_size].to(device)  # (B, C, H, W)
            with torch.autocast(device.split(":")[0], dtype=dtype, enabled=dtype != torch.float32):
                mean = self.vae.encode(x).latent_dist.mean  # (B, c, H/f, W/f)
            out.append((mean.float() * self.scaling_factor).cpu())
        return torch.cat(out)


def vae_folder(path: str | Path) -> Path | None:
    """The AutoencoderKL folder at `path`: itself, or a pipeline's `vae/`; None when there is none."""
    path = Path(path)
    for folder in (path, path / "vae"):
        if (folder / "config.json").is_file() and "AutoencoderKL" in (folder / "config.json").read_text():
            return folder
    return None


def load_codec(path: str | Path) -> LatentCodec:
    """An AutoencoderKL folder (or a DiTPipeline folder with vae/) as a LatentCodec; one-line errors."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such VAE folder")
    folder = vae_folder(path)
    if folder is None:
        raise CheckpointError(f"{path}: not a diffusers AutoencoderKL folder (no config.json naming AutoencoderKL, "
                              f"here or in vae/)")
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        raise CheckpointError(f"{folder}: no .safetensors weights (pickled .bin weights are not read)")
    from diffusers import AutoencoderKL

    try:
        vae = AutoencoderKL.from_pretrained(folder, use_safetensors=True)
    except (OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{folder}: diffusers could not load this AutoencoderKL: "
                              f"{str(e).splitlines()[0]}") from None
    h = hashlib.sha256()
    for w in weights:
        h.update(w.read_bytes())
    return LatentCodec(vae, f"vae:{h.hexdigest()[:16]}*{float(vae.config.scaling_factor):g}")
