"""Feature banks: DiT token features of noisy images over a timestep × layer grid, cached in the run dir.

`extract_features` noises a fixed set of images to each requested timestep and taps the DiT's blocks with
`DiT.forward_features`, following the probe protocol of shared/design.md:
- Null class by default (y=None), so a class-conditional model cannot hand the label to the probe;
  `condition_on_labels=True` passes the true labels and is recorded in `bank.meta`.
- Two disjoint image sets, so probes train and test on different images: a stratified, seeded subset of the
  dataset's train split (n_images) and one of its test split (n_test, default min(n_images // 2, len(test))).
  An `ImageDataset` given directly is carved into both sets (disjoint rows).
- Noise is a pure function of (seed, split, image row): image r of the train split always gets
  `randn` from `Generator().manual_seed(2 * (seed * 1_000_003 + r))` (test split: `... + 1`), so a grid is
  reproducible, and each image's noise is the same at every timestep — only its scale changes with t.
- One forward per (batch, timestep) taps all requested layers and kinds at once; the DiT stops after the
  deepest one. Cost is counted in image-passes: one image at one timestep is 1, even when the forward stops
  at block L of D (the partial forward is not discounted).

A flow-matching DiT (a SiT, `aselect_core.model.sit`; the spec `sit:PATH` or a DiT with a `FlowSchedule`) is
read the same way over continuous t in [0, 1]: x_t = alpha(t) x_0 + sigma(t) eps with the same per-image eps,
and the model is fed t as it was trained. Timesteps (the bank's keys, the probe grid's `timestep` column) are
the schedule's own time — integer DDPM timesteps, or the flow model's t (for SiT 1 = data, 0 = noise) —
and `schedule.snr(t)` labels either with its SNR.

An MAE (`aselect_core.model.MAE`, the "Standard ViT" baseline; a run trained with objective "mae") is read the
same way on the clean images: it has no timesteps, so its grid is timesteps=[0] only and no noise is added
(`TOKEN_READERS`); everything else (splits, pooling, cache, cost) is shared.

Layout of a `FeatureBank`: rows are images, train rows first then test rows (`is_test`); `pooled[(t, key)]`
is (n, D) mean-pooled over patches, `tokens[(t, key)]` (n, N, D) when asked for; keys are
`forward_features` keys ("block.3", "block.3.attn", "embed"...).
Cache: `<run>/analysis/features/<hash>.safetensors` plus `<hash>.json` (written last: a bank is complete
when its JSON exists), keyed by the checkpoint's sha256 (or a hash of the model state), the dataset spec and
splits, the grid, n_images, n_test, seed, kinds, tokens, conditioning and the noise schedule.
"""
from __future__ import annotations

import copy
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from safetensors.torch import load_file, save
from torch import Tensor
from tqdm.auto import tqdm

from aselect_core.datasets import ImageDataset, load_dataset
from aselect_core.diffusion import NoiseSchedule, Schedule, check_timesteps
from aselect_core.io import atomic_write_bytes, atomic_write_json
from aselect_core.model import MAE, DiT, compile_blocks, layer_order, load_model
from aselect_core.model.sit import flow_spec_path, is_flow_spec, load_flow_spec
from aselect_core.precision import autocast, autocast_dtype, check_precision
from aselect_core.train.rundir import RunDir

CACHE_VERSION = 1
SPLIT_OFFSET = {"train": 0, "test": 1}


# -- image sets and their noise ---------------------------------------------------------------------------------
def stratified_order(labels: Tensor, seed: int) -> Tensor:
    """A seeded ordering of rows whose every prefix holds the classes in (nearly) their overall proportions.

    Rows are shuffled, then sorted by (rank within own class + 0.5) / class size: a prefix of length n takes
    about n·p_c rows of each class c.
    """
    y = labels.numpy()
    perm = np.random.default_rng(seed).permutation(len(y))  # (n,)
    counts = np.bincount(y)
    rank = np.zeros(len(y))
    seen = np.zeros_like(counts)
    for i in perm:
        rank[i] = (seen[y[i]] + 0.5) / counts[y[i]]
        seen[y[i]] += 1
    return torch.from_numpy(perm[np.argsort(rank[perm], kind="stable")].copy())


def image_noise(shape: Sequence[int], rows: Tensor, seed: int, split: str) -> Tensor:
    """(len(rows), *shape) standard normal noise, one generator per image seeded by (seed, split, row)."""
    gen = torch.Generator()
    out = torch.empty(len(rows), *shape)
    for i, r in enumerate(rows.tolist()):
        gen.manual_seed(2 * (seed * 1_000_003 + r) + SPLIT_OFFSET[split])
        out[i] = torch.randn(*shape, generator=gen)
    return out


@dataclass
class ProbeSplits:
    """The images a bank (and the pixel baseline) are computed on: disjoint train and test sets.

    `train_rows` / `test_rows` index the source split each set was drawn from; they seed the per-image noise.
    """

    train: ImageDataset
    test: ImageDataset
    train_rows: Tensor  # (n_train,)
    test_rows: Tensor  # (n_test,)
    seed: int
    source: str  # what the images are: a dataset spec, or a content hash of an ImageDataset

    def get(self, split: str) -> tuple[ImageDataset, Tensor]:
        if split not in SPLIT_OFFSET:
            raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
        return (self.train, self.train_rows) if split == "train" else (self.test, self.test_rows)

    def noise(self, split: str) -> Tensor:
        data, rows = self.get(split)
        return image_noise(data.images.shape[1:], rows, self.seed, split)  # (n, C, H, W)

    def noisy(self, split: str, t: int | float, schedule: Schedule | None = None) -> Tensor:
        """x_t of the split's images with their per-image noise; the clean images when schedule is None."""
        data, _ = self.get(split)
        if schedule is None:
            return data.images
        return schedule.q_sample(data.images, schedule.times(t, len(data)), self.noise(split))


def _dataset_hash(data: ImageDataset) -> str:
    h = hashlib.sha256(data.images.numpy().tobytes())
    h.update(data.labels.numpy().tobytes())
    return f"{data.name}#{h.hexdigest()[:16]}"


def probe_splits(dataset: ImageDataset | str, n_images: int, seed: int = 0, n_test: int | None = None,
                 image_size: int | None = None) -> ProbeSplits:
    """Stratified, seeded train set of n_images and test set of n_test images (default min(n_images // 2, ...)).

    A spec string draws them from its train and test splits; an ImageDataset is carved into both (disjoint).
    Sizes are capped by what the split holds.
    """
    if n_images < 2:
        raise ValueError(f"n_images: expected an integer >= 2, got {n_images}")
    if isinstance(dataset, str):
        train_all = load_dataset(dataset, "train", image_size)
        test_all = load_dataset(dataset, "test", image_size)
        n_test = min(n_images // 2, len(test_all)) if n_test is None else min(n_test, len(test_all))
        train_rows = stratified_order(train_all.labels, seed)[:n_images]
        test_rows = stratified_order(test_all.labels, seed + 1)[:n_test]
        source = f"{dataset}@{image_size}"
    elif isinstance(dataset, ImageDataset):
        train_all = test_all = dataset
        n_images = min(n_images, len(dataset) - 1)
        n_test = min(n_images // 2 if n_test is None else n_test, len(dataset) - n_images)
        order = stratified_order(dataset.labels, seed)
        train_rows, test_rows = order[:n_images], order[n_images:n_images + n_test]
        source = _dataset_hash(dataset)
    else:
        raise ValueError(f"dataset: expected a dataset spec string or an ImageDataset, got {type(dataset).__name__}")
    return ProbeSplits(train_all.subset(train_rows), test_all.subset(test_rows), train_rows, test_rows, seed, source)


def run_splits(run: str | Path, n_images: int, seed: int = 0) -> ProbeSplits:
    """The train/test images `extract_features(run, None, ..., n_images, seed)` reads: the run's dataset at its size.

    Row i of `.train` is image i of the bank's train rows (what `index` in analysis/umap.parquet refers to)."""
    info = RunDir(Path(run)).info()
    return probe_splits(info.data, n_images, seed, None, info.image_size)


# -- the bank ---------------------------------------------------------------------------------------------------
@dataclass
class FeatureBank:
    """Features of n images (train rows first, then test rows) at each (timestep, layer key)."""

    pooled: dict[tuple[int, str], Tensor]  # (t, key) -> (n, D) mean over patches
    labels: Tensor  # (n,) int64
    is_test: Tensor  # (n,) bool
    image_rows: Tensor  # (n,) row of each image in its source split
    grid: tuple[int, int]  # (h, w) patch grid
    timesteps: list[int] | list[float]  # the schedule's own time: DDPM integer steps or flow t in [0, 1]
    layers: list[str]  # forward_features keys
    image_passes: int  # DiT image-passes the extraction took (also when this copy came from the cache)
    wall_seconds: float  # wall time of the extraction (also when this copy came from the cache)
    tokens: dict[tuple[int, str], Tensor] | None = None  # (t, key) -> (n, N, D)
    masks: Tensor | None = None  # (n, H, W) int64
    meta: dict[str, Any] = field(default_factory=dict)  # cache key fields, "cached", "condition_on_labels", ...

    @property
    def split(self) -> list[str]:
        return ["test" if b else "train" for b in self.is_test.tolist()]

    @property
    def n_train(self) -> int:
        return int((~self.is_test).sum())

    @property
    def n_test(self) -> int:
        return int(self.is_test.sum())

    def keys(self) -> list[tuple[int, str]]:
        return [(t, k) for t in self.timesteps for k in self.layers]

    def split_mask(self, split: str) -> Tensor:
        """(n,) bool selecting the rows of `split`."""
        if split not in SPLIT_OFFSET:
            raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
        return self.is_test if split == "test" else ~self.is_test


# -- resolving what to run --------------------------------------------------------------------------------------
@dataclass
class Source:
    """A model to extract from, where to cache, and what identifies its weights."""

    model: DiT | MAE
    model_hash: str
    run: RunDir | None
    schedule: Schedule
    data_spec: str | None  # the run's dataset, used when `dataset` is None


def _state_hash(model: DiT | MAE) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _file_sha256(path: Path) -> str:
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        recorded = json.loads(sidecar.read_text()).get("sha256")
        if recorded:
            return recorded
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run_source(run: RunDir, checkpoint: Path) -> Source:
    cfg = run.config()
    return Source(load_model(checkpoint), _file_sha256(checkpoint), run, NoiseSchedule(cfg.schedule, cfg.num_timesteps),
                  cfg.data)


def resolve_source(run_or_model: str | Path | DiT | MAE, schedule: Schedule | None = None) -> Source:
    """A run dir (its latest checkpoint's EMA model), a folder of `aselect analyze --model` (the model it read), a
    checkpoint file inside or outside a run, a flow model spec (`sit:PATH`, with its FlowSchedule), or a DiT / MAE."""
    if isinstance(run_or_model, (DiT, MAE)):
        return Source(run_or_model, _state_hash(run_or_model), None, schedule or NoiseSchedule(), None)
    if is_flow_spec(run_or_model):
        model, flow = load_flow_spec(run_or_model)
        path = flow_spec_path(run_or_model)
        return Source(model, _file_sha256(path) if path.is_file() else _state_hash(model), None, schedule or flow,
                      None)
    path = Path(run_or_model)
    run = RunDir(path)
    if run.is_model_analysis():  # a folder of `aselect analyze --model`: the model it read, on its data
        info = run.info()
        if info.vae is not None:
            raise ValueError(f"run_or_model: {run.model_info_path} is a latent DiT read through the VAE {info.vae}; "
                             f"recompute with `aselect analyze --model {info.source} --vae {info.vae} --out {path}`")
        src = resolve_source(info.source)
        src.data_spec = info.data
    elif run.is_run():
        ckpt = run.latest_checkpoint()
        if ckpt is None:
            raise ValueError(f"run_or_model: {path} is a run dir without a checkpoint yet (no latest.json)")
        src = _run_source(run, ckpt)
    elif path.is_file():
        parent = RunDir(path.parent.parent)
        src = _run_source(parent, path) if parent.is_run() else Source(
            load_model(path), _file_sha256(path), None, NoiseSchedule(), None)
    else:
        raise ValueError(f"run_or_model: {path} is neither a run dir, a checkpoint file nor a DiT")
    if schedule is not None:
        src.schedule = schedule
    return src


def cache_key(fields: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:20]


# -- cache ------------------------------------------------------------------------------------------------------
def _save_bank(stem: Path, bank: FeatureBank) -> None:
    tensors = {"labels": bank.labels, "is_test": bank.is_test, "image_rows": bank.image_rows}
    tensors.update({f"pooled|{t}|{k}": v for (t, k), v in bank.pooled.items()})
    if bank.tokens is not None:
        tensors.update({f"tokens|{t}|{k}": v for (t, k), v in bank.tokens.items()})
    if bank.masks is not None:
        tensors["masks"] = bank.masks
    atomic_write_bytes(stem.with_suffix(".safetensors"), save({k: v.contiguous() for k, v in tensors.items()}))
    atomic_write_json(stem.with_suffix(".json"), {
        "grid": list(bank.grid), "timesteps": bank.timesteps, "layers": bank.layers,
        "image_passes": bank.image_passes, "wall_seconds": bank.wall_seconds, "meta": bank.meta})


def _load_bank(stem: Path) -> FeatureBank | None:
    if not stem.with_suffix(".json").is_file():
        return None
    info = json.loads(stem.with_suffix(".json").read_text())
    tensors = load_file(stem.with_suffix(".safetensors"))
    by_kind: dict[str, dict[tuple[int, str], Tensor]] = {"pooled": {}, "tokens": {}}
    for name, v in tensors.items():
        if "|" in name:
            kind, t, key = name.split("|")
            by_kind[kind][(json.loads(t), key)] = v  # "500" -> 500 (DDPM), "0.5" -> 0.5 (flow t)
    return FeatureBank(by_kind["pooled"], tensors["labels"], tensors["is_test"], tensors["image_rows"],
                       tuple(info["grid"]), info["timesteps"], info["layers"], info["image_passes"],
                       info["wall_seconds"], by_kind["tokens"] or None, tensors.get("masks"),
                       {**info["meta"], "cached": True})


# -- extraction -------------------------------------------------------------------------------------------------
def _dit_tokens(model: DiT, x0: Tensor, eps: Tensor, t: int | float, schedule: Schedule, y: Tensor | None,
                layers: list[int], kinds: Sequence[str]) -> dict[str, Tensor]:
    """DiT tokens of x_t = q_sample(x0, t, eps), the model fed t in its schedule's convention: key -> (B, N, D)."""
    tt = schedule.times(t, len(x0), x0.device)  # (B,)
    return model.forward_features(schedule.q_sample(x0, tt, eps), tt, y, layers=layers, kinds=kinds)


def _mae_tokens(model: MAE, x0: Tensor, eps: Tensor, t: int, schedule: Schedule, y: Tensor | None,
                layers: list[int], kinds: Sequence[str]) -> dict[str, Tensor]:
    """MAE tokens of the clean, unmasked x0 (t is always 0, no noise): key -> (B, N, D)."""
    return model.forward_features(x0, layers=layers, kinds=kinds)


# model class -> (tokens of a batch at one timestep, how many timesteps it reads: None = the schedule's)
TOKEN_READERS: dict[type, tuple[Callable[..., dict[str, Tensor]], int | None]] = {
    DiT: (_dit_tokens, None), MAE: (_mae_tokens, 1)}


def _extract(model: DiT | MAE, splits: ProbeSplits, schedule: Schedule, timesteps: list, layers: list[int],
             kinds: Sequence[str], tokens: bool, batch_size: int, device: str, progress: bool,
             condition_on_labels: bool) -> tuple[dict, dict | None, int]:
    """Run the grid; returns pooled {(t, key): (n, D)}, tokens or None, and the image-passes spent."""
    sets = [s for s in ("train", "test") if len(splits.get(s)[0])]
    batches = [(s, i) for s in sets for i in range(0, len(splits.get(s)[0]), batch_size)]
    pooled: dict[tuple[int, str], list[Tensor]] = {}
    token_maps: dict[tuple[int, str], list[Tensor]] = {}
    noise = {s: splits.noise(s) for s in sets}
    passes = 0
    bar = tqdm(total=len(batches) * len(timesteps), disable=not progress, desc="features", unit="fwd",
               dynamic_ncols=True)
    for split, start in batches:
        data, _ = splits.get(split)
        x0 = data.images[start:start + batch_size].to(device)  # (B, C, H, W)
        eps = noise[split][start:start + batch_size].to(device)  # (B, C, H, W)
        y = data.labels[start:start + batch_size].to(device) if condition_on_labels else None
        for t in timesteps:
            feats = TOKEN_READERS[type(model)][0](model, x0, eps, t, schedule, y, layers, kinds)  # key -> (B, N, D)
            for key, tok in feats.items():
                pooled.setdefault((t, key), []).append(tok.float().mean(dim=1).cpu())  # (B, D)
                if tokens:
                    token_maps.setdefault((t, key), []).append(tok.float().cpu())
            passes += len(x0)
            bar.update(1)
    bar.close()
    cat = lambda d: {k: torch.cat(v) for k, v in d.items()}  # noqa: E731
    return cat(pooled), (cat(token_maps) if tokens else None), passes


def extract_features(run_or_model: str | Path | DiT | MAE, dataset: ImageDataset | str | None,
                     timesteps: Iterable[int | float],
                     layers: Iterable[int] | None, n_images: int, seed: int = 0, *,
                     kinds: Sequence[str] = ("block",), tokens: bool = False, batch_size: int = 256,
                     cache: bool = True, device: str = "cpu", progress: bool = True,
                     condition_on_labels: bool = False, n_test: int | None = None,
                     schedule: Schedule | None = None, cache_dir: str | Path | None = None,
                     precision: str = "auto", compile: bool = False) -> FeatureBank:
    """Features of n_images train and n_test held-out images at every (timestep, layer, kind); see module doc.

    `layers`: block indices (negatives from the end), None = all. `dataset` None = the run's dataset at the
    model's input size. Cached in the run's analysis/features (or `cache_dir`; a bare DiT without cache_dir is
    not cached). `schedule` defaults to the run's (linear, T = 1000 for a bare DiT or checkpoint; a flow spec's
    own FlowSchedule), and `timesteps` are in its time: integers in [0, T), or floats in [0, 1] for a flow.
    `precision` (`aselect_core.precision`): auto = bf16 autocast on CUDA; bf16 on the CPU is opt-in (faster on
    AVX512-BF16 CPUs, features ~0.15% off float32) and keyed in the cache. `compile` runs a torch.compile'd copy
    of the model's blocks (`aselect_core.model.compile_blocks`): for large grids on a GPU; not keyed (same features
    up to float rounding).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size}")
    src = resolve_source(run_or_model, schedule)
    model = src.model
    image_size = model.config["input_size"]
    if dataset is None:
        if src.data_spec is None:
            raise ValueError("dataset: required when run_or_model is not a run dir (no run config to read it from)")
        dataset = src.data_spec
    if type(model) not in TOKEN_READERS:
        raise ValueError(f"run_or_model: expected a DiT or an MAE, got {type(model).__name__}")
    if condition_on_labels and isinstance(model, MAE):
        raise ValueError("condition_on_labels: an MAE reads no labels; expected False")
    fixed_steps = TOKEN_READERS[type(model)][1]
    ts = check_timesteps(timesteps, fixed_steps) if fixed_steps else src.schedule.check_timesteps(timesteps)
    block_layers = model.resolve_layers(layers)
    splits = probe_splits(dataset, n_images, seed, n_test, image_size)
    if splits.test.images.shape[1:] != (model.config["in_channels"], image_size, image_size):
        raise ValueError(f"dataset: images {tuple(splits.test.images.shape[1:])} do not fit the model's input "
                         f"({model.config['in_channels']}, {image_size}, {image_size})")
    key_fields = {"version": CACHE_VERSION, "model": src.model_hash, "dataset": splits.source, "seed": seed,
                  "n_train": len(splits.train), "n_test": len(splits.test), "timesteps": ts, "layers": block_layers,
                  "kinds": list(kinds), "tokens": tokens, "condition_on_labels": condition_on_labels,
                  "schedule": src.schedule.identity}
    if autocast_dtype(device, check_precision(precision)) is not None:  # pooled features stay float32
        key_fields["autocast"] = "bf16"
    folder = Path(cache_dir) if cache_dir is not None else (src.run.artefact("features") if src.run else None)
    stem = folder / cache_key(key_fields) if cache and folder is not None else None
    if stem is not None and (hit := _load_bank(stem)) is not None:
        return hit

    was_training = model.training
    model.eval().to(device)
    start = time.perf_counter()
    try:
        with torch.inference_mode(), autocast(device, precision):
            runner = compile_blocks(copy.deepcopy(model)) if compile else model  # the caller's model stays eager
            pooled, token_maps, passes = _extract(runner, splits, src.schedule, ts, block_layers, kinds, tokens,
                                                  batch_size, device, progress, condition_on_labels)
    finally:
        model.train(was_training)
    g = model.config["input_size"] // model.config["patch_size"]
    masks = None if splits.train.masks is None else torch.cat([splits.train.masks, splits.test.masks])
    bank = FeatureBank(
        pooled=pooled, labels=torch.cat([splits.train.labels, splits.test.labels]),
        is_test=torch.cat([torch.zeros(len(splits.train), dtype=torch.bool),
                           torch.ones(len(splits.test), dtype=torch.bool)]),
        image_rows=torch.cat([splits.train_rows, splits.test_rows]), grid=(g, g), timesteps=ts,
        layers=sorted({k for _, k in pooled}, key=layer_order), image_passes=passes,
        wall_seconds=time.perf_counter() - start, tokens=token_maps, masks=masks,
        meta={**key_fields, "cached": False})
    if stem is not None:
        _save_bank(stem, bank)
    return bank
