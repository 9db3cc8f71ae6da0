"""DDPM ancestral and DDIM (eta = 0) sampling of a DiT over a strided subsequence of its run's noise schedule.

Timesteps tau_1 < ... < tau_S are evenly spaced over [0, T) (the reference DiT's respacing); the sampler walks
them from the noisiest down, with abar_prev = abar[tau_{i-1}] (1 past the last). Classifier-free guidance is the
reference DiT's: one batched forward of [cond; uncond], eps = eps_uncond + w (eps_cond - eps_uncond).
Noise is drawn on the CPU from a seeded torch.Generator, so a seed gives the same images on every device.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from tqdm.auto import tqdm

from analysis.features import resolve_source
from aselect_core.diffusion import NoiseSchedule
from aselect_core.model import DiT
from aselect_core.precision import autocast


@dataclass
class Generator:
    """A run's EMA DiT, its noise schedule, and whether it was trained class-conditionally."""

    model: DiT
    schedule: NoiseSchedule
    conditional: bool
    num_classes: int


def load_generator(run: str | Path) -> Generator:
    """The latest checkpoint's EMA DiT of a run dir (or a checkpoint file) with the schedule it was trained on."""
    src = resolve_source(run)
    if not isinstance(src.model, DiT):
        raise ValueError(f"run: {run} holds a {type(src.model).__name__}, which does not generate; expected a DiT")
    conditional = src.run is not None and src.run.config().conditional
    return Generator(src.model, src.schedule, conditional, src.model.y_embedder.num_classes)


def sampling_timesteps(num_timesteps: int, steps: int) -> Tensor:
    """(S,) increasing, evenly spaced timesteps over [0, T), first and last included."""
    if not 1 <= steps <= num_timesteps:
        raise ValueError(f"steps: expected an integer in [1, {num_timesteps}], got {steps}")
    return torch.from_numpy(np.unique(np.linspace(0, num_timesteps - 1, steps).round().astype(np.int64)))


# A step maps (x_t, x0_hat, eps_hat, abar_t, abar_prev, noise) -> x_prev; abar are 0-d tensors.
Step = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor | None], Tensor]


def _x0_hat(x: Tensor, eps: Tensor, abar: Tensor) -> Tensor:
    return (x - (1 - abar).sqrt() * eps) / abar.sqrt()


def denoised(x: Tensor, eps: Tensor, abar: Tensor, clip: bool) -> tuple[Tensor, Tensor]:
    """(x0_hat, eps_hat) of x_t; with `clip`, x0_hat clamped to the data range [-1, 1] and eps_hat re-derived from
    it so the two stay consistent (guided-diffusion's clip_denoised for pixel-space models, as ADM samples)."""
    x0 = _x0_hat(x, eps, abar)
    if not clip:
        return x0, eps
    x0 = x0.clamp(-1, 1)
    return x0, (x - abar.sqrt() * x0) / (1 - abar).sqrt()


def _ddim_step(x: Tensor, x0: Tensor, eps: Tensor, abar: Tensor, abar_prev: Tensor, noise: Tensor | None) -> Tensor:
    """DDIM with eta = 0: x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev) eps_hat."""
    return abar_prev.sqrt() * x0 + (1 - abar_prev).sqrt() * eps


def _ddpm_step(x: Tensor, x0: Tensor, eps: Tensor, abar: Tensor, abar_prev: Tensor, noise: Tensor | None) -> Tensor:
    """Ancestral step from the posterior q(x_prev | x_t, x0_hat) of the respaced chain (beta = 1 - abar/abar_prev)."""
    beta = 1 - abar / abar_prev
    mean = (abar_prev.sqrt() * beta * x0 + (1 - beta).sqrt() * (1 - abar_prev) * x) / (1 - abar)
    if noise is None:
        return mean
    return mean + (beta * (1 - abar_prev) / (1 - abar)).sqrt() * noise


# sampler name -> (step, whether it draws fresh noise each step)
SAMPLERS: dict[str, tuple[Step, bool]] = {"ddim": (_ddim_step, False), "ddpm": (_ddpm_step, True)}


def _guided_eps(model: nn.Module, x: Tensor, t: Tensor, y: Tensor | None, cfg_scale: float, channels: int) -> Tensor:
    """eps_hat (B, C, H, W): the null class when y is None, guided when cfg_scale != 1."""
    if y is None:
        return model(x, t, None)[:, :channels].float()
    if cfg_scale == 1.0:
        return model(x, t, y)[:, :channels].float()
    null = model.null_labels(len(x), x.device)  # (B,)
    eps = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]))[:, :channels].float()  # (2B, C, H, W)
    cond, uncond = eps.chunk(2)
    return uncond + cfg_scale * (cond - uncond)


def sample(model: nn.Module, n: int, steps: int = 50, sampler: str = "ddim", schedule: NoiseSchedule | None = None,
           y: Tensor | int | None = None, cfg_scale: float = 1.0, seed: int = 0, batch_size: int = 256,
           device: str = "cpu", progress: bool = False, clip_denoised: bool = True) -> Tensor:
    """n images (n, C, H, W) in [-1, 1] from `model(x, t, y)` (eps in the first C channels).

    y: None (the null class), one class index for all, or (n,) labels. cfg_scale w != 1 guides towards y.
    `clip_denoised` clamps each step's x0 estimate to [-1, 1] (`denoised`): the pixel-space default of
    guided-diffusion, without which a briefly trained DiT's samples saturate into colour noise.
    Same seed and batch_size -> bit-identical images.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler: expected one of {sorted(SAMPLERS)}, got {sampler!r}")
    if n < 1:
        raise ValueError(f"n: expected an integer >= 1, got {n}")
    if y is None and cfg_scale != 1.0:
        raise ValueError(f"cfg_scale: guidance ({cfg_scale}) needs class labels y; got y=None")
    step, noisy = SAMPLERS[sampler]
    schedule = schedule or NoiseSchedule()
    dev = torch.device(device)
    channels, size = model.config["in_channels"], model.config["input_size"]
    labels = None if y is None else torch.as_tensor(y, dtype=torch.long).expand(n).contiguous()  # (n,)
    ts = sampling_timesteps(schedule.num_timesteps, steps)  # (S,)
    abars = schedule.alphas_cumprod[ts]  # (S,) float64
    abar_prevs = torch.cat([torch.ones(1, dtype=torch.float64), abars[:-1]])  # (S,)
    gen = torch.Generator().manual_seed(seed)
    model = model.eval().to(dev)
    out = []
    bar = tqdm(total=-(-n // batch_size) * len(ts), desc=f"{sampler} sampling", disable=not progress)
    for start in range(0, n, batch_size):
        b = min(batch_size, n - start)
        x = torch.randn(b, channels, size, size, generator=gen).to(dev)  # (b, C, H, W) x_T
        yb = None if labels is None else labels[start:start + b].to(dev)
        for i in reversed(range(len(ts))):
            t = torch.full((b,), int(ts[i]), dtype=torch.long, device=dev)
            with torch.inference_mode(), autocast(dev):
                eps = _guided_eps(model, x, t, yb, cfg_scale, channels)  # (b, C, H, W)
            noise = torch.randn(b, channels, size, size, generator=gen).to(dev) if noisy and i > 0 else None
            abar, abar_prev = abars[i].to(dev).float(), abar_prevs[i].to(dev).float()
            x = step(x, *denoised(x, eps, abar, clip_denoised), abar, abar_prev, noise)
            bar.update()
        out.append(x.clamp(-1, 1).cpu())
    bar.close()
    return torch.cat(out)  # (n, C, H, W)


def image_grid(images: Tensor, cols: int | None = None) -> np.ndarray:
    """(n, C, H, W) in [-1, 1] -> (rows·H, cols·W, C) uint8, one pixel of gap; C = 1 or 3."""
    n, c, h, w = images.shape
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = -(-n // cols)
    pixels = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()  # (n, H, W, C)
    grid = np.zeros((rows * (h + 1) - 1, cols * (w + 1) - 1, c), dtype=np.uint8)
    for k in range(n):
        r, q = divmod(k, cols)
        grid[r * (h + 1):r * (h + 1) + h, q * (w + 1):q * (w + 1) + w] = pixels[k]
    return grid


def write_samples(images: Tensor, out: str | Path, scale: int = 4) -> tuple[Path, Path]:
    """OUT/samples.npz (array `images`, (n, C, H, W) float32 in [-1, 1]) and OUT/samples.png (an upscaled grid)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    npz, png = out / "samples.npz", out / "samples.png"
    np.savez_compressed(npz, images=images.float().numpy())
    grid = image_grid(images)
    img = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    img.resize((img.width * scale, img.height * scale), Image.NEAREST).save(png)
    return npz, png
