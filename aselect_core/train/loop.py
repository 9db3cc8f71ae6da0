"""The training loop: a DiT learns to denoise at the timesteps a policy picks; cost is counted in image-passes.

The model and its loss come from the objective registry (`objectives.OBJECTIVES`, `TrainConfig.objective`):
`denoise` (the DiT, default) or `mae` (the MAE baseline). One optimiser step on a batch of B images per rank
costs 3·B·world image-passes (forward 1, backward 2, for either objective), plus whatever the policy spends in
`observe` (it reports its own passes). The loop is resumable bit-for-bit on the
CPU: the data order is a pure function of (seed, epoch), and every RNG it draws from is checkpointed.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from aselect_core.datasets import load_dataset
from aselect_core.diffusion import NoiseSchedule
from aselect_core.io import atomic_write_parquet
from aselect_core.model import compile_blocks
from aselect_core.precision import autocast
from aselect_core.policies import Feedback, TimestepPolicy, effective_timesteps, make_policy
from aselect_core.train import checkpoint as ck
from aselect_core.train import transfer
from aselect_core.train.config import TrainConfig
from aselect_core.train.objectives import OBJECTIVES
from aselect_core.train.distributed import (DistContext, all_gather_cat, all_gather_objects, any_across, barrier,
                                            cleanup, init_distributed, mean_across, sharded_features)
from aselect_core.train.rundir import RunDir


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, a run dir that would be overwritten, ...)."""


class TrainingInterrupted(TrainingError):
    """A signal stopped training before its last step; the checkpoint is saved. Raised rather than returning the
    run dir, so that no caller (a bench, the demo's analyse step) goes on with an unfinished run."""


@dataclass
class TrainState:
    """What a checkpoint restores besides the tensors: where we are and what was spent."""

    step: int = 0
    image_passes: int = 0
    wall_seconds: float = 0.0
    metrics: list[dict[str, Any]] = field(default_factory=list)
    curriculum: list[pd.DataFrame] = field(default_factory=list)
    class_curriculum: list[pd.DataFrame] = field(default_factory=list)


class StopFlag:
    """Set by SIGINT/SIGTERM; the loop checks it between steps, saves and exits cleanly."""

    def __init__(self) -> None:
        self.raised: int | None = None

    def __call__(self, signum: int, frame: Any) -> None:
        self.raised = signum

    @contextlib.contextmanager
    def installed(self):
        old = {s: signal.signal(s, self) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, h in old.items():
                signal.signal(s, h)


def ema_decay_at(config: TrainConfig, step: int) -> float:
    """The EMA decay after optimiser step `step` (0-based): `ema_decay`, capped by (1 + step) / (10 + step) under
    `ema_warmup` (timm's and diffusers' warm-up). Without it a run of n steps keeps ema_decay^n of its initial
    weights in the EMA: 45% after 800 steps at 0.999, and a DiT's adaLN-zero init outputs zero."""
    return min(config.ema_decay, (1 + step) / (10 + step)) if config.ema_warmup else config.ema_decay


def lr_at(config: TrainConfig, step: int) -> float:
    """Linear warm-up to `lr`, then constant (DiT trains at a constant 1e-4)."""
    return config.lr * min(1.0, (step + 1) / config.warmup_steps) if config.warmup_steps else config.lr


def batch_indices(n: int, batch_size: int, step: int, seed: int, ctx: DistContext) -> Tensor:
    """Indices of this rank's batch at `step`: a fresh permutation per epoch, sharded across ranks."""
    per_rank = n // ctx.world_size
    steps_per_epoch = max(1, per_rank // batch_size)
    epoch, i = divmod(step, steps_per_epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    shard = perm[ctx.rank::ctx.world_size][:per_rank]
    idx = shard[i * batch_size:(i + 1) * batch_size]
    if len(idx) < batch_size:  # dataset smaller than a batch: wrap around
        idx = shard.repeat(math.ceil(batch_size / len(shard)))[:batch_size]
    return idx


def loss_bin_columns(config: TrainConfig) -> list[tuple[str, int, int]]:
    """(column, t_lo, t_hi) for the per-timestep-bin loss columns of metrics.parquet."""
    edges = torch.linspace(0, config.num_timesteps, config.loss_bins + 1).round().long().tolist()
    return [(f"loss_t{lo:04d}_{hi - 1:04d}", lo, hi) for lo, hi in zip(edges[:-1], edges[1:])]


def per_bin_losses(t: Tensor, loss: Tensor, bins: list[tuple[str, int, int]]) -> dict[str, float]:
    """Mean loss of the samples in each timestep bin (NaN where the batch had none)."""
    out = {}
    for name, lo, hi in bins:
        m = (t >= lo) & (t < hi)
        out[name] = loss[m].mean().item() if m.any() else float("nan")
    return out


def binned(p: Tensor, bins: int, **keys: int) -> pd.DataFrame:
    """A marginal p(t) (T,) summed into `bins` equal timestep bins: columns *keys, bin, t_lo, t_hi, probability."""
    edges = torch.linspace(0, p.numel(), bins + 1).round().long()
    mass = torch.stack([p[lo:hi].sum() for lo, hi in zip(edges[:-1], edges[1:])])  # (bins,)
    return pd.DataFrame({**keys, "bin": range(bins), "t_lo": edges[:-1].numpy(), "t_hi": edges[1:].numpy() - 1,
                         "probability": mass.numpy()})


def curriculum_snapshot(policy: TimestepPolicy, step: int, bins: int) -> pd.DataFrame:
    """The policy's marginal p(t) in bins at `step`, with its effective number of timesteps."""
    p = policy.distribution()  # (T,)
    return binned(p, bins, step=step).assign(effective_timesteps=effective_timesteps(p))


def class_snapshot(policy: TimestepPolicy, step: int, bins: int) -> pd.DataFrame | None:
    """Per-label p(t | y) in bins, for policies that condition on the image (None for the others)."""
    per_class = policy.class_distributions()
    if not per_class:
        return None
    return pd.concat([binned(p, bins, step=step, label=int(y)) for y, p in sorted(per_class.items())],
                     ignore_index=True)


class Trainer:
    """Holds the objects of one run; `fit()` runs the loop. Use `train(config)` from outside."""

    def __init__(self, config: TrainConfig, ctx: DistContext, progress: bool = True):
        self.config, self.ctx, self.progress = config, ctx, progress
        self.run = RunDir(Path(config.out))
        torch.manual_seed(config.seed * 1000 + ctx.rank)  # noise and label-dropout stream, per rank
        self.data = load_dataset(config.data, "train", config.image_size)
        self.images = self.data.images.to(ctx.device)  # (N, C, H, W)
        self.labels = self.data.labels.to(ctx.device)  # (N,)
        self.objective = OBJECTIVES[config.objective]
        self.model = self.objective.build(config, self.data).to(ctx.device)
        self.ema = copy.deepcopy(self.model).requires_grad_(False).eval()
        if config.compile:  # after the EMA copy, which stays eager: it is only averaged into and saved
            compile_blocks(self.model)
        self.schedule = NoiseSchedule(config.schedule, config.num_timesteps)
        self.policy = make_policy(config.policy, num_timesteps=config.num_timesteps,
                                  seed=config.seed * 1000 + ctx.rank, schedule=self.schedule,
                                  **transfer.policy_arguments(config.policy_kwargs))
        source = config.policy_kwargs.get(transfer.SOURCE_KEY)
        if source is not None:  # a fresh start takes the other run's selector; a resume then restores its own
            shape = self.policy.adopt_selector(transfer.selector_state(source))
            transfer.check_image_shape(source, shape, tuple(self.images.shape[1:]))
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.bins = loss_bin_columns(config)
        self.state = TrainState()
        self.features = sharded_features(self.objective.features(self.model, self.schedule), ctx)
        self.ddp = DistributedDataParallel(self.model) if ctx.enabled else None
        self.log = self._logger()  # last: bad data, model or policy settings leave no run dir behind

    # -- set-up -------------------------------------------------------------------------------------------
    def _logger(self) -> logging.Logger:
        """Everything to train.log; warnings and errors (a skipped checkpoint, a stop) to stderr as well."""
        log = logging.getLogger(f"aselect.train.{id(self)}")
        log.setLevel(logging.INFO)
        log.propagate = False
        if self.ctx.is_main:
            self.run.path.mkdir(parents=True, exist_ok=True)
            to_file = logging.FileHandler(self.run.log_path)
            to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            to_stderr = logging.StreamHandler()
            to_stderr.setLevel(logging.WARNING)
            to_stderr.setFormatter(logging.Formatter("aselect train: %(levelname)s: %(message)s"))
            log.addHandler(to_file)
            log.addHandler(to_stderr)
        return log

    def prepare(self) -> None:
        """Start fresh, or resume from the newest good checkpoint; refuse to overwrite a run silently."""
        found = ck.latest_good_checkpoint(self.run.checkpoints, warn=self.log.warning)
        if self.config.resume and found:
            self._restore(*found)
        elif ck.list_checkpoints(self.run.checkpoints) and not self.config.resume:
            raise TrainingError(f"{self.run.path}: already holds checkpoints; pass --resume or choose another --out")
        elif self.config.resume:
            self.log.warning("resume asked but no good checkpoint found in %s: starting from step 0", self.run.checkpoints)
        if self.config.init_from and not (self.config.resume and found):
            self._warm_start(self.config.init_from)
        if self.ctx.is_main:
            self.run.write_config(self.config)

    def _restore(self, path: Path, tensors: dict[str, Tensor], sidecar: dict[str, Any]) -> None:
        if ck.is_slim(sidecar):
            raise TrainingError(f"{path}: a slim export (EMA weights only) cannot be resumed; train a new run")
        if sidecar.get("config_hash") != self.config.hash():
            raise TrainingError(f"{path}: written by a different config (hash {sidecar.get('config_hash')} != "
                                f"{self.config.hash()}); resume needs the same settings")
        dev = self.ctx.device
        self.model.load_state_dict({k: v.to(dev) for k, v in ck.unprefixed("model", tensors).items()})
        self.ema.load_state_dict({k: v.to(dev) for k, v in ck.unprefixed("ema", tensors).items()})
        ck.restore_optimizer(self.optimizer, ck.unprefixed("optim", tensors), sidecar["param_groups"])
        rank = self.ctx.rank if any(k.startswith(f"rng.{self.ctx.rank}.") for k in tensors) else 0
        self.policy.load_state_dict(ck.unprefixed(f"policy.{rank}", tensors))
        rng = ck.unprefixed(f"rng.{rank}", tensors)
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and dev.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], dev)
        step = sidecar["step"]
        metrics = self.run.metrics() if self.run.metrics_path.is_file() else pd.DataFrame()
        curriculum = self.run.curriculum() if self.run.curriculum_path.is_file() else pd.DataFrame()
        classes = self.run.class_curriculum()
        self.state = TrainState(
            step=step, image_passes=sidecar["image_passes"], wall_seconds=sidecar["wall_seconds"],
            metrics=metrics[metrics.step <= step].to_dict("records") if len(metrics) else [],
            curriculum=[curriculum[curriculum.step <= step]] if len(curriculum) else [],
            class_curriculum=[classes[classes.step <= step]] if classes is not None else [])
        self.log.info("resumed from %s (step %d)", path.name, step)

    def _warm_start(self, source: str) -> None:
        """Continue `source` from its EMA weights (train.transfer.warm_start): same step, same counted cost."""
        start = transfer.warm_start(source)
        if start.step >= self.config.steps:
            raise TrainingError(f"init_from: {source} stopped at step {start.step}; --steps {self.config.steps} "
                                "leaves nothing to train (expected more)")
        for module in (self.model, self.ema):
            transfer.load_weights(module, start.weights, source)
        self.state = TrainState(step=start.step, image_passes=start.image_passes, wall_seconds=start.wall_seconds)
        self.log.info("warm start from %s (step %d, %d image-passes)", source, start.step, start.image_passes)

    # -- checkpoints ----------------------------------------------------------------------------------------
    def _rank_states(self) -> dict[str, Tensor]:
        """Policy and RNG state of every rank, gathered to all ranks (rank 0 writes them)."""
        rng = {"torch": torch.get_rng_state()}
        if self.ctx.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.ctx.device)
        mine = {**ck.prefixed("policy", self.policy.state_dict()), **ck.prefixed("rng", rng)}
        out: dict[str, Tensor] = {}
        for r, states in enumerate(all_gather_objects(mine, self.ctx)):
            out.update({f"{k.split('.', 1)[0]}.{r}.{k.split('.', 1)[1]}": v for k, v in states.items()})
        return out

    def save(self, status: str) -> None:
        rank_states = self._rank_states()
        if self.ctx.is_main:
            optim, groups = ck.optimizer_tensors(self.optimizer)
            tensors = {**ck.prefixed("model", self.model.state_dict()), **ck.prefixed("ema", self.ema.state_dict()),
                       **ck.prefixed("optim", optim), **rank_states}
            last = self.state.metrics[-1] if self.state.metrics else {}
            path = ck.save_checkpoint(self.run.checkpoints, self.state.step, tensors, self.objective.metadata(self.model), {
                "config_hash": self.config.hash(), "image_passes": self.state.image_passes,
                "wall_seconds": self.state.wall_seconds, "param_groups": groups, "world_size": self.ctx.world_size,
                "metrics": {k: v for k, v in last.items() if isinstance(v, (int, float)) and math.isfinite(v)}})
            self._flush_tables()
            ck.prune_checkpoints(self.run.checkpoints, self.config.keep_last)
            self.run.write_latest(checkpoint=str(path.relative_to(self.run.path)), step=self.state.step,
                                  status=status, image_passes=self.state.image_passes)
            self.log.info("checkpoint %s (%s)", path.name, status)
        barrier(self.ctx)

    def _flush_tables(self) -> None:
        if self.state.metrics:
            atomic_write_parquet(self.run.metrics_path, pd.DataFrame(self.state.metrics))
        if self.state.curriculum:
            atomic_write_parquet(self.run.curriculum_path, pd.concat(self.state.curriculum, ignore_index=True))
        if self.state.class_curriculum:
            atomic_write_parquet(self.run.class_curriculum_path, pd.concat(self.state.class_curriculum, ignore_index=True))

    def _snapshot(self) -> None:
        """Record the policy's p(t) (and p(t | y) where it has one) at the current step."""
        bins = self.config.curriculum_bins
        self.state.curriculum.append(curriculum_snapshot(self.policy, self.state.step, bins))
        per_class = class_snapshot(self.policy, self.state.step, bins)
        if per_class is not None:
            self.state.class_curriculum.append(per_class)

    # -- one step -------------------------------------------------------------------------------------------
    def step(self) -> dict[str, Any]:
        """One optimiser step; returns its metrics row."""
        cfg, step = self.config, self.state.step
        idx = batch_indices(len(self.images), cfg.batch_size, step, cfg.seed, self.ctx).to(self.ctx.device)
        x0, y = self.images[idx], self.labels[idx]  # (B, C, H, W), (B,)
        t, w = self.policy.sample(x0, step)  # (B,), (B,)
        t, w = t.to(self.ctx.device), w.to(self.ctx.device)
        with autocast(self.ctx.device, cfg.precision):
            per_sample = self.objective.loss(self.ddp or self.model, self.schedule, x0,
                                             y if cfg.conditional else None, t).float()  # (B,)
        loss = (w * per_sample).mean()
        if any_across(not bool(torch.isfinite(loss)), self.ctx):
            raise TrainingError(f"non-finite loss at step {step + 1}; stopped, last good checkpoint kept in "
                                f"{self.run.checkpoints}")
        lr = lr_at(cfg, step)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        with torch.no_grad():
            decay = ema_decay_at(cfg, step)
            for e, p in zip(self.ema.parameters(), self.model.parameters()):
                e.lerp_(p, 1.0 - decay)

        all_t = all_gather_cat(t, self.ctx)
        all_loss = all_gather_cat(per_sample.detach(), self.ctx)
        feedback = Feedback(x0=all_gather_cat(x0, self.ctx), t=all_t, loss=all_loss, step=step,
                            y=all_gather_cat(y, self.ctx), features=self.features, world_size=self.ctx.world_size)
        policy_metrics = self.policy.observe(feedback) or {}
        passes = 3 * cfg.batch_size * self.ctx.world_size + int(policy_metrics.pop("image_passes", 0))
        self.state.step += 1
        self.state.image_passes += passes
        return {"step": self.state.step, "loss": mean_across(loss.detach(), self.ctx).item(), "lr": lr,
                "grad_norm": grad_norm.item(), "image_passes": self.state.image_passes,
                **per_bin_losses(all_t, all_loss, self.bins),
                **{f"policy_{k}": float(v) for k, v in policy_metrics.items()}}

    # -- the loop -------------------------------------------------------------------------------------------
    def fit(self) -> Path:
        cfg = self.config
        self.model.train()
        if not self.state.curriculum:  # a fresh or warm start; a resume restored its own
            self._snapshot()
        bar = tqdm(total=cfg.steps, initial=self.state.step, disable=not (self.progress and self.ctx.is_main),
                   desc=f"train {cfg.model} {cfg.policy}", unit="step", dynamic_ncols=True)
        stop = StopFlag()
        with stop.installed():
            while self.state.step < cfg.steps:
                if any_across(stop.raised is not None, self.ctx):
                    self.log.info("signal received at step %d: saving and exiting", self.state.step)
                    self.save("interrupted")
                    bar.close()
                    raise TrainingInterrupted(f"{self.run.path}: interrupted at step {self.state.step} of "
                                              f"{cfg.steps}; checkpoint saved, train again with resume to go on")
                t0 = time.perf_counter()
                try:
                    row = self.step()
                except TrainingError as e:
                    self.log.error(str(e))
                    if self.ctx.is_main:
                        latest = self.run.latest() or {}
                        self.run.write_latest(**{**latest, "status": "failed", "error": str(e)})
                    raise
                dt = time.perf_counter() - t0
                self.state.wall_seconds += dt
                row["wall_seconds"] = self.state.wall_seconds
                self.state.metrics.append(row)
                if self.state.step % cfg.curriculum_every == 0:
                    self._snapshot()
                bar.update(1)
                if self.state.step % cfg.log_every == 0:
                    ips = cfg.batch_size * self.ctx.world_size / max(dt, 1e-9)
                    bar.set_postfix(loss=f"{row['loss']:.4f}", img_s=f"{ips:.0f}")
                    self.log.info("step %d loss %.5f img/s %.1f passes %d", row["step"], row["loss"], ips,
                                  row["image_passes"])
                if self.state.step % cfg.checkpoint_every == 0 or self.state.step == cfg.steps:
                    self.save("finished" if self.state.step == cfg.steps else "running")
        bar.close()
        return self.run.path


def train(config: TrainConfig, progress: bool = True) -> Path:
    """Train a DiT under `config`; returns the run dir. Joins a torchrun process group when launched by one."""
    ctx = init_distributed(config.device)
    try:
        trainer = Trainer(config, ctx, progress=progress)
        trainer.prepare()
        return trainer.fit()
    finally:
        cleanup(ctx)
