"""InfoNCE lower bound on I(x; y) with a learned separable critic f(x, y) = g(x)·h(y).

van den Oord et al. (2018); Poole et al. (2019), "On variational bounds of mutual information":
  I(x; y) ≥ E[ f(x_i, y_i) − log (1/B) Σ_j exp f(x_i, y_j) ] = log B − CE(softmax_j f(x_i, y_j), i),
over batches of B pairs. The bound can never exceed log B (its ceiling, reported with the value), so it is
only informative when the true MI is well below log B. The critic is trained on one split and the bound is
evaluated on held-out batches, so its value is not inflated by overfitting. Discrete y enters one-hot.
Training runs on one CPU thread (restored afterwards): the matmuls are tiny, and extra threads only contend
on a shared machine.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from analysis.mi.base import MIEstimate, is_discrete, standardise


def _mlp(d_in: int, d_out: int, hidden: int) -> nn.Module:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, d_out))


def _linear(d_in: int, d_out: int, hidden: int) -> nn.Module:
    return nn.Linear(d_in, d_out)


CRITICS: dict[str, Callable[[int, int, int], nn.Module]] = {"mlp": _mlp, "bilinear": _linear}


def infonce_bound(gx: Tensor, hy: Tensor) -> Tensor:
    """InfoNCE of one batch of embeddings gx (B, m), hy (B, m): log B − CE of matching pairs (scalar)."""
    scores = gx @ hy.T  # (B, B), positives on the diagonal
    return math.log(len(gx)) - F.cross_entropy(scores, torch.arange(len(gx)))


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one CPU thread inside the block, restoring the previous count (tiny models: faster, and no
    OpenMP spin-waits on shared cores; tests/conftest.py uses it too)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def infonce_mi(x: np.ndarray, y: np.ndarray, critic: str = "mlp", batch_size: int = 128, steps: int = 600,
               lr: float = 3e-3, hidden: int = 64, embed: int = 16, train_fraction: float = 0.5,
               seed: int = 0) -> MIEstimate:
    """Held-out InfoNCE bound in nats; the estimate's ceiling is log(batch_size)."""
    if critic not in CRITICS:
        raise ValueError(f"critic: expected one of {sorted(CRITICS)}, got {critic!r}")
    n_train = int(round(train_fraction * len(x)))
    if not 2 <= batch_size <= min(n_train, len(x) - n_train):
        raise ValueError(f"batch_size: expected 2 <= batch_size <= train and held-out sizes "
                         f"({n_train}, {len(x) - n_train}), got {batch_size}")
    ys = np.eye(y.max() + 1)[y] if is_discrete(y) else standardise(y)  # (n, e)
    xt, yt = torch.from_numpy(standardise(x)).float(), torch.from_numpy(ys).float()
    with torch.random.fork_rng(devices=[]), single_thread():
        torch.manual_seed(seed)
        g, h = CRITICS[critic](xt.shape[1], embed, hidden), CRITICS[critic](yt.shape[1], embed, hidden)
        order = torch.randperm(len(x))
        train, held = order[:n_train], order[n_train:]
        opt = torch.optim.Adam([*g.parameters(), *h.parameters()], lr=lr)
        for _ in range(steps):
            batch = train[torch.randperm(n_train)[:batch_size]]
            loss = -infonce_bound(g(xt[batch]), h(yt[batch]))
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            batches = held[: len(held) // batch_size * batch_size].view(-1, batch_size)  # (m, B)
            value = torch.stack([infonce_bound(g(xt[b]), h(yt[b])) for b in batches]).mean().item()
    ceiling = math.log(batch_size)
    return MIEstimate(value, "infonce", ceiling, len(x), x.shape[1],
                      f"InfoNCE, {critic} critic, {steps} steps, ceiling log({batch_size}) = {ceiling:.3f} nats")
