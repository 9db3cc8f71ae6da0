"""Process-group set-up for torchrun (DDP): gloo on CPU, nccl on CUDA; a no-op for a single process."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def resolve_device(pref: str) -> torch.device:
    """`auto` takes CUDA when present; asking for `cuda` without it is an error."""
    if pref == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch.cuda.is_available() is False")
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(pref)


def init_distributed(device_pref: str) -> DistContext:
    """Join the torchrun process group if WORLD_SIZE > 1 (env set by torchrun), else run alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_pref)
    if world == 1:
        return DistContext(0, 1, device)
    if device.type == "cuda":
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistContext(dist.get_rank(), dist.get_world_size(), device)


def all_gather_cat(x: Tensor, ctx: DistContext) -> Tensor:
    """Concatenate equally shaped tensors from all ranks along dim 0 (identity for one process)."""
    if not ctx.enabled:
        return x
    parts = [torch.empty_like(x) for _ in range(ctx.world_size)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def sharded_features(features: Callable[..., Tensor] | None, ctx: DistContext) -> Callable[..., Tensor] | None:
    """`features(x0, t)` of a batch gathered from all ranks, each rank computing only its own slice.

    Policies see the gathered batch (B·W images); without this every rank would run the feature passes of all
    B·W, W times the cost the trainer counts. The noise is drawn for the whole batch first (ranks enter with the
    same RNG state, so they draw the same noise, as one process would), each rank passes its slice of it to
    `features(x0, t, noise)`, and the per-rank features are gathered back in rank order."""
    if features is None or not ctx.enabled:
        return features

    def run(x0: Tensor, t: Tensor) -> Tensor:
        noise = torch.randn_like(x0)  # (B·W, C, H, W)
        n = len(x0) // ctx.world_size
        mine = slice(ctx.rank * n, (ctx.rank + 1) * n)
        return all_gather_cat(features(x0[mine], t[mine], noise[mine]), ctx)  # (B·W, D)
    return run


def all_gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """One object per rank (in-memory pickling between our own processes; never from a file)."""
    if not ctx.enabled:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def mean_across(x: Tensor, ctx: DistContext) -> Tensor:
    if ctx.enabled:
        x = x.clone()
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        x /= ctx.world_size
    return x


def any_across(flag: bool, ctx: DistContext) -> bool:
    """True on every rank if it is true on any rank (so all ranks stop together)."""
    if not ctx.enabled:
        return flag
    t = torch.tensor([int(flag)], device=ctx.device if ctx.device.type == "cuda" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def cleanup(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
