"""Analyse a model file or folder without a run dir: `aselect analyze --model PATH [--vae PATH] --out DIR`.

The model is anything `aselect_core.model.load_dit` reads (an official DiT `.pt`, this project's safetensors, a
diffusers `DiTTransformer2DModel` or `DiTPipeline` folder). A latent DiT reads its images through a
`LatentCodec` (`--vae`, or the pipeline's `vae/`): the train and test images of the probe splits are encoded
once to scaled posterior means, and those latents are what is noised, probed and baselined (the "pixels" rows
of probe.parquet are then flattened latents). The latent set is named after the data spec, the image size and
the codec's identity, so the bank's cache key (`dataset`) records the VAE. Images are carved again from the
encoded train + test set (disjoint, stratified, seeded), so the probe splits match `analyze_run`'s in size.

Writes under `DIR/analysis/`: probe.parquet (oracle grid + baseline rows), hfr.parquet, mi.parquet,
selection.parquet and summary.json as `analysis.pipeline.analyze_run` does, and `DIR/model.json` describing
the source (model path, VAE, data, image size). Selections other than the oracle are not scored against it
(no run dir holds the oracle's record), so their regret is left empty.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from analysis.features import probe_splits
from analysis.pipeline import selection_tables, summarise
from analysis.probe import pixel_baseline
from analysis.selection import options_for, select_timestep
from aselect_core.datasets import ImageDataset
from aselect_core.diffusion import NoiseSchedule
from aselect_core.io import atomic_write_json, atomic_write_parquet
from aselect_core.model import load_dit
from aselect_core.model.codec import LatentCodec, load_codec, vae_folder
from aselect_core.model.sit import flow_spec_path, is_flow_spec, load_flow_spec
from aselect_core.train.rundir import RunDir

MODEL_METHODS = ("oracle", "hfr", "mi")


def encoded_dataset(data: str, image_size: int, n_images: int, seed: int, codec: LatentCodec | None,
                    device: str = "cpu") -> ImageDataset | str:
    """The probe images of `data` at image_size: the spec itself without a codec, else their latents
    (train rows then test rows, (N, c, h, w)) as one ImageDataset named by spec, size and codec identity."""
    if codec is None:
        return data
    codec.latent_size(image_size)
    splits = probe_splits(data, n_images, seed, None, image_size)
    images = torch.cat([splits.train.images, splits.test.images])  # (N, C, H, W) in [-1, 1]
    latents = codec.encode(images, device=device)  # (N, c, H/f, W/f)
    return ImageDataset(latents, torch.cat([splits.train.labels, splits.test.labels]), None, splits.train.classes,
                        f"{data}@{image_size}|{codec.identity}")


def _spec(model: str | Path, path: Path) -> str:
    """`model`'s spec with its file as `path`: "sit:PATH" stays a flow spec, a plain path stays a path."""
    return f"{str(model).partition(':')[0]}:{path}" if is_flow_spec(model) else str(path)


def analyze_model(model: str | Path, data: str, out: str | Path, image_size: int | None = None,
                  vae: str | Path | None = None, timesteps: list[int] | list[float] | None = None,
                  layers: list[int] | None = None, n_images: int = 1000,
                  seed: int = 0, progress: bool = True, device: str = "cpu", **options: Any) -> dict[str, Path]:
    """Probe / HFR / MI grids and selections of the model at `model`; writes the files of the module doc.

    `image_size` defaults to the model's input size (times the VAE's downsampling factor for a latent DiT);
    `options` are method options, routed as in `analyze_run`."""
    flow = is_flow_spec(model)  # sit:PATH / KIND:PATH: a flow-matching DiT with its own time convention
    path = flow_spec_path(model) if flow else Path(model)
    if not path.exists():
        raise ValueError(f"model: {path}: no such file or folder")
    dit, schedule = load_flow_spec(model) if flow else (load_dit(path), NoiseSchedule())
    codec = load_codec(vae) if vae is not None else (load_codec(path) if path.is_dir() and vae_folder(path)
                                                      else None)
    cfg = dit.config
    if image_size is None:
        image_size = cfg["input_size"] * (codec.factor if codec is not None else 1)
    if codec is not None:
        codec.check_model(cfg["in_channels"], cfg["input_size"], image_size)
    elif image_size != cfg["input_size"]:
        raise ValueError(f"image_size: the pixel-space DiT takes {cfg['input_size']} px, got {image_size} "
                         f"(a latent DiT needs --vae)")
    dataset = encoded_dataset(data, image_size, n_images, seed, codec, device)
    ts = schedule.check_timesteps(schedule.default_times() if timesteps is None else timesteps)
    routed = options_for(MODEL_METHODS, options)
    sels = {m: select_timestep(dit, dataset, method=m, layer=layers, timesteps=ts, n_images=n_images, seed=seed,
                               progress=progress, device=device, schedule=schedule, **routed[m])
            for m in MODEL_METHODS}
    splits = probe_splits(dataset, n_images, seed, None, cfg["input_size"])
    tables = selection_tables(sels, pixel_baseline(splits, tuple(sorted(set(ts))), schedule))
    rd = RunDir(Path(out))
    paths = {}
    for name, df in tables.items():
        paths[name] = rd.artefact(name)
        atomic_write_parquet(paths[name], df)
    paths["summary"] = rd.artefact("summary")
    atomic_write_json(paths["summary"], summarise(sels, tables["probe"], tables["hfr"]))
    paths["model"] = rd.model_info_path
    atomic_write_json(paths["model"], {
        "model": _spec(model, path.resolve()), "name": _spec(model, Path(path.name)), "config": cfg,
        "vae": None if codec is None else {
            "path": str(Path(vae or path).resolve()), "identity": codec.identity,
            "scaling_factor": codec.scaling_factor, "downsample": codec.factor},
        "data": data, "image_size": image_size, "schedule": schedule.identity, "time_axis": schedule.time_axis,
        "n_images": n_images, "seed": seed})
    return paths
