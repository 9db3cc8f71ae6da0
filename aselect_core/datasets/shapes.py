"""`shapes`: procedural RGB images whose generating factors are known, with exact segmentation masks.

Each image is one flat-coloured shape (the label) of a random colour, size and position on a gray background
that is solid, a linear gradient or noise. The factors are drawn independently, so a probe can ask which of
them a DiT layer encodes at a timestep; the masks (0 = background, 1 + shape class on the shape) allow
per-token probes. Everything is vectorised numpy and seeded: 3,000 images take about 0.2 s.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from aselect_core.datasets.base import RawData

Region = Callable[[np.ndarray, np.ndarray], np.ndarray]  # u, v (n, H, W) in shape radii -> inside (n, H, W)

SHAPES: dict[str, Region] = {
    "circle": lambda u, v: u**2 + v**2 <= 1.0,
    "square": lambda u, v: np.maximum(abs(u), abs(v)) <= 0.8,
    "triangle": lambda u, v: (v >= -0.9) & (v <= 0.7) & (abs(u) <= 0.55 * (v + 0.9)),  # apex up
    "diamond": lambda u, v: abs(u) + abs(v) <= 1.0,
    "cross": lambda u, v: (np.minimum(abs(u), abs(v)) <= 0.3) & (np.maximum(abs(u), abs(v)) <= 1.0),
    "ring": lambda u, v: (u**2 + v**2 <= 1.0) & (u**2 + v**2 >= 0.5**2),
}

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.9, 0.1, 0.1), "green": (0.1, 0.8, 0.2), "blue": (0.15, 0.25, 0.95),
    "yellow": (0.95, 0.85, 0.1), "magenta": (0.85, 0.1, 0.8), "cyan": (0.1, 0.85, 0.9),
}

Background = Callable[[np.ndarray, np.ndarray, np.ndarray, np.random.Generator], np.ndarray]


def _solid(level: np.ndarray, yy: np.ndarray, xx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One gray level per image: (n,) -> (n, H, W)."""
    return np.broadcast_to(level[:, None, None], (len(level), *yy.shape))


def _gradient(level: np.ndarray, yy: np.ndarray, xx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A linear ramp of ±0.2 around the level, in a random direction per image."""
    angle = rng.uniform(0, 2 * np.pi, len(level))[:, None, None]  # (n, 1, 1)
    return level[:, None, None] + 0.4 * (np.cos(angle) * (xx - 0.5) + np.sin(angle) * (yy - 0.5))


def _noise(level: np.ndarray, yy: np.ndarray, xx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gaussian pixel noise (sd 0.15) around the level."""
    return level[:, None, None] + 0.15 * rng.standard_normal((len(level), *yy.shape))


# level (n,), yy, xx (H, W) in [0, 1), rng -> gray background (n, H, W), clipped to [0, 1] by the caller
BACKGROUNDS: dict[str, Background] = {"solid": _solid, "gradient": _gradient, "noise": _noise}


def make_shapes(n: int = 3000, size: int = 32, seed: int = 0) -> RawData:
    """`n` shape images (size × size RGB); labels index SHAPES, factors hold every drawn factor."""
    rng = np.random.default_rng(seed)
    shape = rng.permutation(np.arange(n) % len(SHAPES))  # (n,) balanced classes
    colour = rng.integers(len(COLOURS), size=n)  # (n,)
    radius = rng.integers(size // 6, size // 3 + 1, size=n).astype(np.float64)  # (n,) in pixels
    cx = radius + rng.random(n) * (size - 1 - 2 * radius)  # (n,) centre, shape fully inside
    cy = radius + rng.random(n) * (size - 1 - 2 * radius)
    background = rng.integers(len(BACKGROUNDS), size=n)  # (n,)
    level = rng.uniform(0.15, 0.85, size=n)  # (n,) mean gray of the background

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)  # (H, W) pixel coordinates
    u = (xx - cx[:, None, None]) / radius[:, None, None]  # (n, H, W)
    v = (yy - cy[:, None, None]) / radius[:, None, None]
    inside = np.zeros((n, size, size), dtype=bool)
    gray = np.empty((n, size, size))
    for k, region in enumerate(SHAPES.values()):
        rows = shape == k
        inside[rows] = region(u[rows], v[rows])
    for k, paint in enumerate(BACKGROUNDS.values()):
        rows = background == k
        gray[rows] = paint(level[rows], yy / size, xx / size, rng)

    rgb = np.asarray(list(COLOURS.values()))[colour]  # (n, 3)
    images = np.where(inside[..., None], rgb[:, None, None, :], gray.clip(0.0, 1.0)[..., None])  # (n, H, W, 3)
    masks = np.where(inside, shape[:, None, None] + 1, 0).astype(np.int64)  # (n, H, W)
    factors = pd.DataFrame({
        "shape": np.asarray(list(SHAPES))[shape], "colour": np.asarray(list(COLOURS))[colour],
        "size": radius.astype(np.int64), "x": cx, "y": cy,
        "background": np.asarray(list(BACKGROUNDS))[background], "level": level,
    })
    return RawData(images.astype(np.float32), shape.astype(np.int64), list(SHAPES), masks, factors)
