"""Untrained baselines beside a run's DiT numbers: raw pixels and a randomly initialised DiT of the run's config.

Both use the probe protocol of shared/design.md and the run's own image sets: `analysis.features.probe_splits`
with the same seed, the same per-image noise and the run's noise schedule, so a row here and a row of the run's
probe grid differ only in what produced the features.

- `pixel_grid`: `analysis.probe.pixel_baseline` (flattened x_t) over the run's timesteps.
- `random_init_grid`: every (timestep, layer) of a freshly initialised DiT of the run's architecture, probed
  like `probe_grid`; rows carry `model = "random-init"` and the `init` used. Two inits (`INITS`):
  * "reference": the DiT's own init, the point every trained run starts from. Its adaLN-Zero init zeroes each
    block's modulation linear, so every gate is 0 and every block is the identity: all layers' features equal
    the patch embedding + pos_embed ("embed") exactly, at every timestep (tests/test_baselines.py asserts it).
    Its grid therefore measures one random linear patch projection, not a transformer.
  * "random-gates": the same init, except each block's adaLN linear is initialised like every other linear
    (xavier weight) with bias 0 for shift and scale and 1 for both gates. Each block is then a standard
    residual pre-LN transformer block with random weights, weakly modulated by t through the random weight:
    the random-architecture baseline the "random init" rows of representation-learning tables mean. The
    seed table (bench/seed_table.py) uses this one; "reference" is kept to show the identity fact.
Probe cost of a random-init grid is the usual feature-extraction count (`bank.image_passes`); training cost 0.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd
import torch
from torch import nn

from analysis.features import extract_features, probe_splits, resolve_source
from analysis.probe import pixel_baseline, probe_grid
from aselect_core.model import DiT


def keep_reference(model: DiT) -> None:
    """The reference adaLN-Zero init, untouched: every block is the identity."""


def randomise_gates(model: DiT) -> None:
    """Each block's adaLN linear: xavier weight, bias (shift, scale, gate) = (0, 0, 1) for attention and MLP."""
    for block in model.blocks:
        linear: nn.Linear = block.adaLN_modulation[-1]
        nn.init.xavier_uniform_(linear.weight)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = linear.bias.data.chunk(6)  # (D,) each
        for part in (shift_msa, scale_msa, shift_mlp, scale_mlp):
            part.zero_()
        for part in (gate_msa, gate_mlp):
            part.fill_(1.0)


INITS: dict[str, Callable[[DiT], None]] = {"reference": keep_reference, "random-gates": randomise_gates}


def random_init_dit(like: DiT, init: str = "random-gates", seed: int = 0) -> DiT:
    """A fresh DiT with the constructor args of `like`, initialised from `seed` and then by `INITS[init]`."""
    if init not in INITS:
        raise ValueError(f"init: expected one of {', '.join(INITS)}, got {init!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DiT(**like.config)
        INITS[init](model)
    model.config_name = like.config_name
    return model.eval()


def random_init_grid(run: str | Path, timesteps: Iterable[int], layers: Iterable[int] | None, n_images: int,
                     seed: int = 0, *, init: str = "random-gates", dataset: str | None = None,
                     knn: bool = True, progress: bool = False, device: str = "cpu", **kw: Any) -> pd.DataFrame:
    """Probe grid (GRID_COLUMNS + model, init, image_passes) of a random-init DiT of `run`'s architecture.

    Same dataset (default: the run's), images, per-image noise and schedule as the run's own grid; the
    weights come from `seed` (also the probe splits' seed). Extra keywords go to `extract_features`.
    """
    src = resolve_source(run)
    if not isinstance(src.model, DiT):
        raise ValueError(f"run: {run} holds a {type(src.model).__name__}; a random-init grid needs a DiT run")
    model = random_init_dit(src.model, init, seed)
    bank = extract_features(model, dataset or src.data_spec, timesteps, layers, n_images, seed,
                            schedule=src.schedule, cache=False, progress=progress, device=device, **kw)
    return probe_grid(bank, knn=knn).assign(model="random-init", init=init, image_passes=bank.image_passes)


def pixel_grid(run: str | Path, timesteps: Iterable[int], n_images: int, seed: int = 0, *,
               dataset: str | None = None, knn: bool = True, **probe_kw: Any) -> pd.DataFrame:
    """The raw-pixel probe (`analysis.probe.pixel_baseline`) on `run`'s images, noise and schedule, at each t."""
    src = resolve_source(run)
    splits = probe_splits(dataset or src.data_spec, n_images, seed, None, src.model.config["input_size"])
    return pixel_baseline(splits, tuple(timesteps), src.schedule, knn=knn, **probe_kw).assign(model="pixels")
