"""Which pixels of x₀ (and which DiT blocks) a probe's class logit, or the learned selector's choice, rests on.

Integrated gradients (captum) of a scalar F(x₀) w.r.t. the clean image x₀, from a baseline x̄ (default the
all-zero image, mid-grey in [-1, 1]): A = (x₀ - x̄) ⊙ ∫₀¹ ∇F(x̄ + α(x₀ - x̄)) dα, with the completeness property
Σ A = F(x₀) - F(x̄) up to the quadrature error, which captum returns as the convergence delta.

Probe logits (`attribute_across_timesteps`): F is the path the probe protocol reads features through,
    x₀ → x_t = q_sample(x₀, t, ε) with ε FIXED (one draw per image, the same at every t and every IG step)
       → DiT.forward_features(x_t, t, null class)["block.L"] (B, N, D) → mean over patches → standardise
       → linear probe logits (B, K) → the target class's logit.
Fixing ε makes F a deterministic function of x₀, so IG's path integral is well defined and timesteps are
comparable: only √ᾱ_t, the t-embedding and the probe change with t.

Blocks (`block_attribution`): LayerIntegratedGradients on each block's attention and MLP branch (the modules
`forward_features` calls; the residual stream itself has no module output to hook). A branch's signed total is
F(x₀) - F(x₀ with that branch set to its value at x̄), its attribution mass Σ|A| how much of the logit flows
through it.

Selector (`selector_attribution`): the learned A-SelecT policy's network g_φ: x₀ (B, C, H, W) → bin logits
(B, K) (aselect_core/policies/selector.py); F is the log-odds of an early (low-noise) vs a late bin, or the
log-probability of one bin. Any `nn.Module` with that signature works.

Runs (`attributions_for_run`, `attribution_for_run` for one image): the probe maps of test images of a run, a
LinearProbe per timestep that is the accuracy grid's own probe at that cell (`grid_probe`: `linear_probe` on the
run's cached feature bank, C chosen on validation as in `analysis.probe`), with each image's
fixed probe-protocol noise; `write_run_attributions` stores them as RUN/analysis/attribution.npz for the
`attribution` figure (`aselect analyze --attribution-images N`).

Cost: each attribution runs n_steps forward and backward passes per image (3·n_steps image-passes at one t).
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from captum.attr import IntegratedGradients, LayerIntegratedGradients
from torch import Tensor, nn

from analysis.features import extract_features, resolve_source, run_splits
from analysis.probe import FittedProbe, fit_probe, linear_probe
from aselect_core.diffusion import NoiseSchedule
from aselect_core.model.layer_key import LayerKey, resolve_block
from aselect_core.policies import make_policy
from aselect_core.io import atomic_write_bytes
from aselect_core.train.transfer import policy_arguments, selector_state
from aselect_core.train.rundir import RunDir

BRANCHES = ("attn", "mlp")  # DiTBlock submodules whose outputs block_attribution hooks
MAX_INTERNAL_ROWS = 256  # default cap on the rows one IG forward holds (internal_batch_size)


@dataclass(frozen=True)
class LinearProbe:
    """A standardised linear probe on pooled features: logits = ((f - mean) / std) @ weight.T + bias."""

    weight: Tensor  # (K, D)
    bias: Tensor  # (K,)
    mean: Tensor  # (D,)
    std: Tensor  # (D,)

    def __post_init__(self) -> None:
        w, b, m, s = self.weight, self.bias, self.mean, self.std
        if w.dim() != 2 or b.shape != (w.shape[0],) or m.shape != (w.shape[1],) or s.shape != m.shape or \
                not (s > 0).all():
            raise ValueError(f"probe: expected weight (K, D), bias (K,), mean (D,), std (D,) > 0, got shapes "
                             f"{tuple(w.shape)}, {tuple(b.shape)}, {tuple(m.shape)}, {tuple(s.shape)}")

    @property
    def num_classes(self) -> int:
        return self.weight.shape[0]

    def __call__(self, pooled: Tensor) -> Tensor:
        """pooled (B, D) -> logits (B, K)."""
        z = (pooled - self.mean.to(pooled)) / self.std.to(pooled)  # (B, D)
        return z @ self.weight.to(pooled).T + self.bias.to(pooled)

    @classmethod
    def from_fitted(cls, probe: FittedProbe) -> "LinearProbe":
        """The torch form of an `analysis.probe.FittedProbe`. Two classes give K = 2 logits (0, w·z + b)."""
        model = probe.model
        w, b = torch.as_tensor(model.coef_), torch.as_tensor(model.intercept_)  # (K or 1, D), (K or 1,)
        if len(model.classes_) == 2:
            w, b = torch.cat([torch.zeros_like(w), w]), torch.cat([torch.zeros_like(b), b])
        return cls(w.float(), b.float(), torch.as_tensor(probe.mean).float(), torch.as_tensor(probe.std).float())

    @classmethod
    def fit(cls, x: Tensor, y: Tensor, C: float = 1.0, max_iter: int = 500) -> "LinearProbe":
        """`analysis.probe.fit_probe` of x (n, D) on labels y (n,) at strength C, in torch form."""
        return cls.from_fitted(fit_probe(np.asarray(torch.as_tensor(x, dtype=torch.float64)), np.asarray(y), C,
                                         max_iter, tol=1e-4))


ProbeLike = LinearProbe | tuple[Tensor, Tensor, Tensor, Tensor]


def as_probe(probe: ProbeLike) -> LinearProbe:
    return probe if isinstance(probe, LinearProbe) else LinearProbe(*probe)


class ProbeLogits(nn.Module):
    """F(x₀, ε) = probe logits (B, K) of block `layer`'s mean-pooled tokens of x_t = q_sample(x₀, t, ε), null class."""

    def __init__(self, model: nn.Module, probe: LinearProbe, schedule: NoiseSchedule, timestep: int, layer: int):
        super().__init__()
        self.model, self.probe, self.schedule, self.timestep, self.layer = model, probe, schedule, timestep, layer

    def forward(self, x0: Tensor, noise: Tensor) -> Tensor:
        t = torch.full((len(x0),), self.timestep, dtype=torch.long, device=x0.device)  # (B,)
        xt = self.schedule.q_sample(x0, t, noise)  # (B, C, H, W)
        tokens = self.model.forward_features(xt, t, None, layers=[self.layer])[str(LayerKey.block(self.layer))]  # (B, N, D)
        return self.probe(tokens.mean(dim=1))  # (B, K)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """The model in eval mode for the block (no label dropout), its previous mode restored after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


# -- argument checks ----------------------------------------------------------------------------------------------
def _check_images(x0: Tensor, name: str = "x0") -> None:
    if not isinstance(x0, Tensor) or x0.dim() != 4 or len(x0) == 0:
        raise ValueError(f"{name}: expected a non-empty image tensor (B, C, H, W), got "
                         f"{tuple(x0.shape) if isinstance(x0, Tensor) else type(x0).__name__}")


def _check_steps(n_steps: int) -> None:
    if not isinstance(n_steps, int) or n_steps < 2:
        raise ValueError(f"n_steps: expected an integer >= 2, got {n_steps!r}")


def _targets(target: int | Sequence[int] | Tensor, batch: int, num_classes: int) -> Tensor:
    """target as a (B,) int64 tensor of class indices in [0, K)."""
    t = torch.as_tensor(target, dtype=torch.long).reshape(-1)
    t = t.expand(batch) if len(t) == 1 else t
    if len(t) != batch or (t < 0).any() or (t >= num_classes).any():
        raise ValueError(f"target: expected one class index or {batch} of them in [0, {num_classes}), "
                         f"got {torch.as_tensor(target).tolist()}")
    return t.contiguous()


def _baseline(baseline: Tensor | None, x0: Tensor) -> Tensor:
    if baseline is None:
        return torch.zeros_like(x0)
    if baseline.shape != x0.shape:
        raise ValueError(f"baseline: expected the shape of x0 {tuple(x0.shape)}, got {tuple(baseline.shape)}")
    return baseline.to(x0)


def _noise(noise: Tensor | None, x0: Tensor, seed: int) -> Tensor:
    """The fixed ε (B, C, H, W): given, or drawn once from a generator seeded with `seed`."""
    if noise is None:
        return torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed)).to(x0)
    if noise.shape != x0.shape:
        raise ValueError(f"noise: expected the shape of x0 {tuple(x0.shape)}, got {tuple(noise.shape)}")
    return noise.to(x0)


def _internal_batch(internal_batch_size: int | None, batch: int, n_steps: int) -> int:
    """Rows per IG forward: whole copies of the batch, at most MAX_INTERNAL_ROWS (but at least one copy)."""
    return internal_batch_size or batch * max(1, min(n_steps, MAX_INTERNAL_ROWS // batch))


def _common(model: nn.Module, x0: Tensor, layer: int | str, schedule: NoiseSchedule | None, noise: Tensor | None,
            seed: int, n_steps: int, baseline: Tensor | None) -> tuple[int, NoiseSchedule, Tensor, Tensor]:
    """Checked (block index, schedule, fixed ε, baseline x̄) shared by the probe attributions."""
    _check_images(x0)
    _check_steps(n_steps)
    block = resolve_block(layer, model.depth)
    return block, schedule or NoiseSchedule(), _noise(noise, x0, seed), _baseline(baseline, x0)


def _check_timestep(t: int, schedule: NoiseSchedule) -> int:
    if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 0 <= t < schedule.num_timesteps:
        raise ValueError(f"timesteps: expected integers in [0, {schedule.num_timesteps}), got {t!r}")
    return int(t)


# -- probe logits w.r.t. pixels, across timesteps -----------------------------------------------------------------
def attribute_across_timesteps(model: nn.Module, probe: ProbeLike | Mapping[int, ProbeLike], x0: Tensor,
                               target: int | Sequence[int] | Tensor, timesteps: Sequence[int], n_steps: int = 32,
                               *, layer: int | str = -1, schedule: NoiseSchedule | None = None,
                               noise: Tensor | None = None, seed: int = 0, baseline: Tensor | None = None,
                               internal_batch_size: int | None = None,
                               method: str = "gausslegendre") -> tuple[Tensor, Tensor]:
    """IG of the probe's target logit w.r.t. x₀ (B, C, H, W) at each timestep -> (A (T, B, C, H, W), delta (T, B)).

    `probe`: one LinearProbe (or (weight, bias, mean, std)) for every t, or {t: probe} (a probe fitted at each
    t). `layer`: the block the probe reads ("block.i" or an index). `noise`: the fixed ε (default: randn seeded
    with `seed`), the same at every t. `baseline`: x̄, default zeros. delta = Σ A - (F(x₀) - F(x̄)) per image.
    """
    block, sched, eps, base = _common(model, x0, layer, schedule, noise, seed, n_steps, baseline)
    ts = [_check_timestep(t, sched) for t in timesteps]
    probes = {int(t): as_probe(p) for t, p in probe.items()} if isinstance(probe, Mapping) else \
        {t: as_probe(probe) for t in ts}
    if not ts or any(t not in probes for t in ts):
        raise ValueError(f"timesteps: expected a non-empty list covered by the probe mapping, got {ts} "
                         f"for probes at {sorted(probes)}")
    rows = _internal_batch(internal_batch_size, len(x0), n_steps)
    attrs, deltas = [], []
    with eval_mode(model):
        for t in ts:
            p = probes[t]
            ig = IntegratedGradients(ProbeLogits(model, p, sched, t, block))
            a, d = ig.attribute(x0, base, target=_targets(target, len(x0), p.num_classes),
                                additional_forward_args=(eps,), n_steps=n_steps, method=method,
                                internal_batch_size=rows, return_convergence_delta=True)
            attrs.append(a.detach())  # (B, C, H, W)
            deltas.append(d.detach())  # (B,)
    return torch.stack(attrs), torch.stack(deltas)


def grid_probe(pooled: Tensor, labels: Tensor, is_test: Tensor) -> LinearProbe:
    """The probe the accuracy grid reports at a cell (`analysis.probe.linear_probe`: C chosen on validation,
    refit on all train rows), in torch form, so the maps explain the probe whose accuracy is shown."""
    train = ~is_test
    res = linear_probe(pooled[train], labels[train], pooled[is_test], labels[is_test])  # (n, D) rows per split
    return LinearProbe.from_fitted(res.probe)


def attributions_for_run(run: str | Path, images: Sequence[int], timesteps: Sequence[int], layer: int,
                         n_images: int, seed: int = 0, n_steps: int = 16,
                         targets: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IG maps of test images `images` (rows of `run_splits(run, n_images, seed).test`) at each timestep, for
    block `layer` of the run, each image's class-`targets` probe logit (default: its own label).

    Probes are fitted per timestep on the pooled train features of `extract_features(run, None, timesteps, [layer],
    n_images, seed)`; each image is noised with its own probe-protocol ε. Returns (maps (n_t, n, H, W) summed over
    channels, the images (n, C, H, W) in [-1, 1], the targets (n,)).
    """
    bank = extract_features(run, None, timesteps, [layer], n_images, seed, progress=False)
    train, key = ~bank.is_test, bank.layers[0]
    probes = {t: grid_probe(bank.pooled[(t, key)], bank.labels, bank.is_test) for t in bank.timesteps}
    splits, source = run_splits(run, n_images, seed), resolve_source(run)
    rows = list(images)
    x0, noise = splits.test.images[rows], splits.noise("test")[rows]  # (n, C, H, W) each
    target = splits.test.labels[rows] if targets is None else torch.as_tensor(list(targets))  # (n,)
    attrs, _ = attribute_across_timesteps(source.model, probes, x0, target, timesteps, n_steps, layer=layer,
                                          schedule=source.schedule, noise=noise)  # (n_t, n, C, H, W)
    return attrs.sum(dim=2).numpy(), x0.numpy(), target.numpy()


def attribution_for_run(run: str | Path, image: int, target: int, timesteps: Sequence[int], layer: int,
                        n_images: int, seed: int = 0, n_steps: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """`attributions_for_run` of one test image and target: (maps (n_t, H, W), the image (C, H, W))."""
    maps, x0, _ = attributions_for_run(run, [image], timesteps, layer, n_images, seed, n_steps, targets=[target])
    return maps[:, 0], x0[0]


def write_run_attributions(run: str | Path, images: Sequence[int], timesteps: Sequence[int], layer: int,
                           n_images: int, seed: int = 0, n_steps: int = 16) -> Path:
    """`attributions_for_run` (own-label targets) written atomically to RUN/analysis/attribution.npz, the file the
    `attribution` figure reads: attributions (n_t, n, H, W), timesteps (n_t,), images, targets, layer."""
    maps, x0, targets = attributions_for_run(run, images, timesteps, layer, n_images, seed, n_steps)
    buf = io.BytesIO()
    np.savez(buf, attributions=maps, timesteps=np.asarray(list(timesteps)), images=x0, targets=targets,
             layer=np.asarray(layer))
    path = RunDir(Path(run)).artefact("attribution")
    atomic_write_bytes(path, buf.getvalue())
    return path


def block_attribution(model: nn.Module, probe: ProbeLike, x0: Tensor, target: int | Sequence[int] | Tensor,
                      timestep: int, n_steps: int = 32, *, layer: int | str = -1, parts: Sequence[str] = BRANCHES,
                      schedule: NoiseSchedule | None = None, noise: Tensor | None = None, seed: int = 0,
                      baseline: Tensor | None = None, internal_batch_size: int | None = None) -> pd.DataFrame:
    """Attribution of the probe's target logit at `timestep` to each block's attention/MLP branch (blocks 0..layer).

    Columns: block, part, attribution (signed Σ A, mean over images), abs_mass (Σ|A|, mean over images),
    fraction (abs_mass / its total over all rows), effect (`patch_effect`: the logit change when the branch is
    set to its baseline value, mean over images) and delta (mean |Σ A - effect|, IG's quadrature error).
    """
    p = as_probe(probe)
    block, sched, eps, base = _common(model, x0, layer, schedule, noise, seed, n_steps, baseline)
    tgt = _targets(target, len(x0), p.num_classes)
    if not parts or any(part not in BRANCHES for part in parts):
        raise ValueError(f"parts: expected a non-empty list from {list(BRANCHES)}, got {list(parts)}")
    forward = ProbeLogits(model, p, sched, _check_timestep(timestep, sched), block)
    rows = []
    with eval_mode(model):
        for i in range(block + 1):
            for part in parts:
                module = getattr(model.blocks[i], part)
                a = LayerIntegratedGradients(forward, module).attribute(
                    x0, base, target=tgt, additional_forward_args=(eps,), n_steps=n_steps,
                    internal_batch_size=_internal_batch(internal_batch_size, len(x0), n_steps))  # (B, N, D)
                signed = a.flatten(1).sum(1)  # (B,)
                effect = patch_effect(forward, module, x0, base, eps, tgt)  # (B,)
                rows.append({"block": i, "part": part, "attribution": signed.mean().item(),
                             "abs_mass": a.flatten(1).abs().sum(1).mean().item(), "effect": effect.mean().item(),
                             "delta": (signed - effect).abs().mean().item()})
    df = pd.DataFrame(rows)
    total = df.abs_mass.sum()
    df.insert(4, "fraction", df.abs_mass / total if total > 0 else 0.0)
    return df


def patch_effect(forward: nn.Module, module: nn.Module, x0: Tensor, baseline: Tensor, noise: Tensor,
                 target: Tensor) -> Tensor:
    """F(x₀) - F(x₀ with `module`'s output replaced by its output at the baseline), target logit (B,).

    What layer IG on `module` sums to (completeness): captum interpolates only that module's output, every
    other path sees x₀. (captum's own convergence delta compares against F(x̄), which holds for a layer every
    path goes through, not for one branch of a residual stream.)
    """
    stored: dict[str, Tensor] = {}
    with torch.no_grad():
        hook = module.register_forward_hook(lambda m, inp, out: stored.setdefault("out", out))
        try:
            forward(baseline, noise)
        finally:
            hook.remove()
        hook = module.register_forward_hook(lambda m, inp, out: stored["out"])
        try:
            patched = forward(x0, noise)  # (B, K)
        finally:
            hook.remove()
        full = forward(x0, noise)  # (B, K)
    return (full - patched).gather(1, target[:, None]).squeeze(1)


# -- the learned selector -----------------------------------------------------------------------------------------
def _half_log_odds(logits: Tensor) -> Tensor:
    """log p(early half of the bins) - log p(late half), (B,) from bin logits (B, K)."""
    k = logits.shape[1] // 2
    return logits[:, :k].logsumexp(dim=1) - logits[:, k:].logsumexp(dim=1)


SELECTOR_SCORES: dict[str, Callable[[Tensor], Tensor]] = {
    "early": _half_log_odds,  # the selector's preference for low-noise timesteps
    "late": lambda logits: -_half_log_odds(logits),  # ... and for high-noise ones
}


def selector_score(logits: Tensor, which: str | int) -> Tensor:
    """The scalar per image (B,) that selector_attribution explains: SELECTOR_SCORES[which], or for a bin index k
    log p(bin k | x₀)."""
    K = logits.shape[1]
    if isinstance(which, str) and which in SELECTOR_SCORES and K >= 2:
        return SELECTOR_SCORES[which](logits)
    if isinstance(which, (int, np.integer)) and not isinstance(which, bool) and -K <= which < K:
        return logits.log_softmax(dim=1)[:, which]
    raise ValueError(f"which: expected one of {sorted(SELECTOR_SCORES)} (with K >= 2 bins) or a bin index in "
                     f"[-{K}, {K}), got {which!r}")


def selector_attribution(selector_net: nn.Module, x0: Tensor, which: str | int = "early", n_steps: int = 32, *,
                         baseline: Tensor | None = None, internal_batch_size: int | None = None,
                         method: str = "gausslegendre") -> tuple[Tensor, Tensor]:
    """IG w.r.t. x₀ (B, C, H, W) of the selector's early-vs-late log-odds (or a bin's log-probability)
    -> (A (B, C, H, W), delta (B,))."""
    _check_images(x0)
    _check_steps(n_steps)
    ig = IntegratedGradients(lambda x: selector_score(selector_net(x), which))
    with eval_mode(selector_net):
        a, d = ig.attribute(x0, _baseline(baseline, x0), n_steps=n_steps, method=method,
                            internal_batch_size=_internal_batch(internal_batch_size, len(x0), n_steps),
                            return_convergence_delta=True)
    return a.detach(), d.detach()


def load_selector(run: str | Path) -> nn.Module:
    """The learned policy's selector network g_φ at the run's latest checkpoint (rank 0's copy)."""
    config = RunDir(Path(run)).config()
    policy = make_policy("learned", num_timesteps=config.num_timesteps, **policy_arguments(config.policy_kwargs))
    policy.load_state_dict(selector_state(run))
    return policy.net.eval()
