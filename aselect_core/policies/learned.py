"""`learned`: the A-SelecT selector g_φ(x₀) -> p_φ(t | x₀), trained to spend the DiT's steps on informative t.

Sampling: p(bin | x₀) = (1 - uniform_prob) softmax(g_φ(x₀)) + uniform_prob |bin| / T over K equal bins of
[0, T), then t uniform within the bin. The uniform share keeps every timestep reachable (REINFORCE cannot
learn about a bin it never draws) and bounds the unbiased mode's weights by 1 / uniform_prob, so no
clipping (which would bias the objective) is needed. Weights: `concentrated` w = 1, the seed's objective
(training *moves* to the selected timesteps); `unbiased` w = p_uniform(t) / p(t | x₀) = |bin| / (T p(bin | x₀)),
so E[w L_t] is the uniform-t denoising loss and only its variance changes.

The bilevel loop: the trainer's DiT step minimises mean(w L_t) at the sampled t; every `update_every` steps
`observe` takes one Adam step of φ that maximises

    J(φ) = E_{t ~ p_φ(·|x₀)}[r(x₀, t)] - trivial_weight · P_φ(t < margin or t >= T - margin)
           - budget_weight · (H_t(p̄_φ) - log target_effective)²

- r: InfoNCE reward (`selector.infonce_reward`, ceiling log B): how well pooled DiT features of two
  independently noised copies of x₀ at t identify x₀ among the batch. Costs 2·B image-passes per update.
  The negatives sit at their own t, so a t-dependent component of the DiT's features (its t-embedding)
  also tells them apart: the reward partly credits timestep identity, a pull towards spreading that the
  budget term counters. Negatives at the same t would cost B² passes per update.
- the trivial term keeps mass off near-clean t (identity is trivially kept there, nothing is learned)
  and pure-noise t; P_φ is the batch-mean selector mass in the margins.
- the budget term pulls the effective number of timesteps exp(H_t(p̄_φ)) of the batch marginal p̄_φ towards
  `target_effective` (the seed reports ~80 of 1000). Both penalties are exact functions of p_φ and are
  differentiated directly.

Gradient of the reward term: REINFORCE, ∇ = E[(r - b) ∇ log p_φ(bin(t) | x₀)] on the bins the DiT actually
trained on (feedback.t; φ only changes inside `observe`, so they were drawn from the current p_φ: on-policy),
with b a moving average of the batch-mean reward. A relaxation such as Gumbel-softmax does not apply: r
reaches t only through the DiT's integer timestep (the ᾱ_t lookup and the t-embedding), so it is not
differentiable in t, and relaxing t would need a continuous-t DiT and a backward through it, which this
design keeps out (the selector's gradient never touches the DiT).

DDP: every rank sees the same gathered feedback. The network's initialisation and the noise inside the
feature calls come from `selector_seed`, shared by all ranks (the trainer offsets `seed` per rank), each in a
private fork of the global RNG, so all ranks make identical updates while sampling from their own generators.

State: tensors only. The network is built on the first `sample`/`observe` from x₀'s shape (in_channels and
image size are inferred); `state_dict` then holds `image_shape`, `net.*` and Adam's moments (`optim.*`).
`load_state_dict` into a policy whose network is not built yet builds it from the stored `image_shape`
(on the CPU; it follows x₀ to its device at the next call), so resume is exact from a fresh policy.

`distribution()` is a running mean, then (after 1/(1 - marginal_decay) batches) an EMA, of the batch-mean
p(bin | x₀) over the x₀ seen in `observe` (all ranks' images), spread uniformly within each bin;
`class_distributions()` keeps the same average per label in feedback.y.
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterator

import torch
from torch import Tensor

from aselect_core.diffusion import NoiseSchedule
from aselect_core.policies.base import Feedback, TimestepPolicy, check_batch, register_policy
from aselect_core.policies.selector import Selector, infonce_reward, timestep_entropy

MODES = ("concentrated", "unbiased")
STATE_KEYS = ("bins", "marginal", "marginal_count", "baseline", "updates", "class_labels", "class_marginals",
              "class_counts")


@contextlib.contextmanager
def private_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Run a block on the global RNG (CPU, and `device` when CUDA) seeded with `seed`; the caller's stream is restored.

    The feature callable draws its noise from the global RNG, which the trainer seeds per rank: a shared seed
    makes the reward identical on every rank, and the trainer's own noise stream is left untouched.
    """
    cuda = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.random.default_generator.manual_seed(seed)
        for d in cuda:
            with torch.cuda.device(d):
                torch.cuda.manual_seed(seed)
        yield


def running_average(avg: Tensor, new: Tensor, count: int, decay: float) -> Tensor:
    """Mean of the first 1/(1 - decay) values, an EMA after: early values are not pulled towards the initial one."""
    return avg + max(1.0 - decay, 1.0 / (count + 1)) * (new - avg)


def as_float64(p: Tensor) -> Tensor:
    """(B, K) float32 probabilities -> float64 on the CPU, renormalised so every row sums to 1 in float64."""
    p = p.detach().double().cpu()
    return p / p.sum(dim=1, keepdim=True)


def _check(ok: bool, field: str, expected: str, value: object) -> None:
    if not ok:
        raise ValueError(f"learned policy: {field} expected {expected}, got {value!r}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@register_policy("learned")
class LearnedPolicy(TimestepPolicy):
    """A-SelecT: t ~ p_φ(t | x₀) from a small CNN on x₀, trained by REINFORCE on an InfoNCE informativeness reward.

    Parameters (defaults at T = 1000): bins K = 50; mode; update_every = 4 DiT steps per selector step; lr of
    its Adam; target_effective (T/10); trivial_weight, budget_weight; margin (T/20 timesteps at each end);
    hidden CNN width; temperature of the InfoNCE similarities; uniform_prob mixed into p; baseline_decay of
    the REINFORCE baseline; marginal_decay of `distribution()`'s EMA; selector_seed, shared by all ranks.
    """

    def __init__(self, num_timesteps: int = 1000, seed: int = 0, schedule: NoiseSchedule | None = None,
                 bins: int = 50, mode: str = "concentrated", update_every: int = 4, lr: float = 1e-3,
                 target_effective: float | None = None, trivial_weight: float = 1.0, budget_weight: float = 1.0,
                 margin: int | None = None, hidden: int = 32, temperature: float = 0.1, uniform_prob: float = 0.01,
                 baseline_decay: float = 0.9, marginal_decay: float = 0.95, selector_seed: int = 0,
                 freeze_selector: bool = False):
        super().__init__(num_timesteps, seed, schedule)
        T = num_timesteps
        target_effective = T / 10 if target_effective is None else target_effective  # 100 of 1000: the seed's ~80
        margin = T // 20 if margin is None else margin  # 50 of 1000: 5% at each end
        _check(_is_int(bins) and 1 <= bins <= T, "bins", f"an integer in [1, {T}]", bins)
        _check(mode in MODES, "mode", f"one of {list(MODES)}", mode)
        _check(_is_int(update_every) and update_every >= 1, "update_every", "a positive integer", update_every)
        _check(lr > 0, "lr", "a positive number", lr)
        _check(1 <= target_effective <= T, "target_effective", f"a number in [1, {T}]", target_effective)
        _check(trivial_weight >= 0, "trivial_weight", "a number >= 0", trivial_weight)
        _check(budget_weight >= 0, "budget_weight", "a number >= 0", budget_weight)
        _check(_is_int(margin) and 0 <= 2 * margin < T, "margin", f"an integer in [0, {(T - 1) // 2}]", margin)
        _check(_is_int(hidden) and hidden >= 1, "hidden", "a positive integer", hidden)
        _check(temperature > 0, "temperature", "a positive number", temperature)
        low = 0.0 if mode == "concentrated" else 1e-6  # unbiased weights are bounded by 1 / uniform_prob
        _check(low <= uniform_prob < 1, "uniform_prob", f"a number in [{low:g}, 1) in {mode} mode", uniform_prob)
        _check(0 <= baseline_decay < 1, "baseline_decay", "a number in [0, 1)", baseline_decay)
        _check(0 <= marginal_decay < 1, "marginal_decay", "a number in [0, 1)", marginal_decay)
        _check(_is_int(selector_seed), "selector_seed", "an integer", selector_seed)
        _check(isinstance(freeze_selector, bool), "freeze_selector", "true or false", freeze_selector)
        self.bins, self.mode, self.update_every, self.lr = bins, mode, update_every, lr
        self.target_effective, self.trivial_weight, self.budget_weight = target_effective, trivial_weight, budget_weight
        self.margin, self.hidden, self.temperature, self.uniform_prob = margin, hidden, temperature, uniform_prob
        self.baseline_decay, self.marginal_decay, self.selector_seed = baseline_decay, marginal_decay, selector_seed
        self.freeze_selector = freeze_selector  # a transferred g_φ kept fixed: no updates, no reward passes

        edges = torch.linspace(0, T, bins + 1, dtype=torch.float64).round().long()  # (K+1,)
        self.bin_lo, self.bin_size = edges[:-1], edges.diff()  # (K,), (K,) int64
        self.bin_of_t = torch.bucketize(torch.arange(T), edges[1:], right=True)  # (T,)
        self.uniform_bins = self.bin_size.double() / T  # (K,) p(bin) of uniform t
        ts = torch.arange(T)
        trivial = ((ts < margin) | (ts >= T - margin)).double()  # (T,)
        self.trivial_fraction = torch.zeros(bins, dtype=torch.float64).index_add_(0, self.bin_of_t, trivial) \
            / self.bin_size  # (K,) share of each bin inside the margins

        self.net: Selector | None = None  # built from the first x0 (see the module docstring)
        self.optimizer: torch.optim.Adam | None = None
        self.image_shape: tuple[int, ...] | None = None
        self.marginal, self.marginal_count = self.uniform_bins.clone(), 0  # (K,): p̄(bin) of observed x0
        self.class_marginals: dict[int, Tensor] = {}  # label -> (K,)
        self.class_counts: dict[int, int] = {}
        self.baseline, self.updates = 0.0, 0

    # -- the network --------------------------------------------------------------------------------------------
    def _build(self, image_shape: tuple[int, ...]) -> tuple[Selector, torch.optim.Adam]:
        with private_rng(self.selector_seed, torch.device("cpu")):
            net = Selector(image_shape[0], self.hidden, self.bin_size)
        return net, torch.optim.Adam(net.parameters(), lr=self.lr)

    def _network(self, x0: Tensor) -> Selector:
        """The selector on x0's device, built on first use from x0's (C, H, W)."""
        shape = tuple(x0.shape[1:])
        if self.net is None:
            _check(len(shape) == 3, "x0", "images (B, C, H, W)", tuple(x0.shape))
            self.image_shape = shape
            self.net, self.optimizer = self._build(shape)
        elif shape != self.image_shape:
            raise ValueError(f"x0: expected images of shape {self.image_shape} (the selector was built for them), "
                             f"got {shape}")
        if self.net.head.weight.device != x0.device:
            self.net.to(x0.device)
            for st in self.optimizer.state.values():
                st.update({k: v.to(x0.device) for k, v in st.items() if k != "step"})
        return self.net

    def bin_probs(self, x0: Tensor) -> Tensor:
        """p(bin | x₀) (B, K) float32 on x0's device: the selector's softmax mixed with uniform_prob of uniform t."""
        q = self._network(x0)(x0.float()).softmax(dim=1)  # (B, K)
        return (1 - self.uniform_prob) * q + self.uniform_prob * self.uniform_bins.to(q)

    # -- sampling ---------------------------------------------------------------------------------------------
    def sample(self, x0: Tensor, step: int) -> tuple[Tensor, Tensor]:
        check_batch(x0)
        with torch.no_grad():
            p = as_float64(self.bin_probs(x0))  # (B, K)
        k = torch.multinomial(p, 1, generator=self.generator).squeeze(1)  # (B,)
        u = torch.rand(len(k), generator=self.generator, dtype=torch.float64)  # (B,) position within the bin
        t = self.bin_lo[k] + (u * self.bin_size[k]).long()  # (B,)
        if self.mode == "unbiased":
            w = self.bin_size[k] / (self.num_timesteps * p.gather(1, k[:, None]).squeeze(1))  # (B,)
        else:
            w = torch.ones(len(k), dtype=torch.float64)
        return t.to(x0.device), w.float().to(x0.device)

    # -- learning ---------------------------------------------------------------------------------------------
    def observe(self, feedback: Feedback) -> dict[str, float]:
        """Track p̄(t) (every step) and, every `update_every` steps, take one selector step (2·B image-passes);
        a frozen selector only tracks."""
        x0, t = feedback.x0, feedback.t.detach().long()
        if t.shape != (len(x0),):
            raise ValueError(f"feedback.t: expected shape ({len(x0)},) like feedback.x0's batch, got {tuple(t.shape)}")
        update = feedback.step % self.update_every == 0 and not self.freeze_selector
        if update and feedback.features is None:
            raise ValueError("feedback.features: the learned policy needs the pooled-DiT-feature callable, got None")
        with torch.set_grad_enabled(update):
            p = self.bin_probs(x0)  # (B, K)
            h = timestep_entropy(p.mean(dim=0), self.bin_size)  # () entropy of the batch marginal over t
            budget = (h - math.log(self.target_effective)) ** 2
            trivial = (p @ self.trivial_fraction.to(p)).mean()
        metrics = {"effective_timesteps": math.exp(h.item()),
                   "entropy": timestep_entropy(p.detach(), self.bin_size).mean().item(),
                   "budget_penalty": budget.item(), "trivial_mass": trivial.item(), "update": float(update),
                   "image_passes": 0.0}
        self._track(as_float64(p), feedback.y)
        if update:
            reward = self._reward(feedback)  # (B,)
            if self.updates == 0:
                self.baseline = reward.mean().item()
            k = self.bin_of_t[t.cpu()].to(p.device)  # (B,) bins trained on
            log_p = p.gather(1, k[:, None]).squeeze(1).log()  # (B,)
            loss = -((reward - self.baseline) * log_p).mean() + self.trivial_weight * trivial \
                + self.budget_weight * budget
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.baseline += (1 - self.baseline_decay) * (reward.mean().item() - self.baseline)
            self.updates += 1
            metrics.update(reward=reward.mean().item(), image_passes=float(2 * len(x0)))
        return metrics

    def _reward(self, feedback: Feedback) -> Tensor:
        """InfoNCE reward (B,) between two independently noised copies of x0 at t, noise from `selector_seed`."""
        with torch.no_grad(), private_rng(self.selector_seed * 1_000_003 + feedback.step, feedback.x0.device):
            f1 = feedback.features(feedback.x0, feedback.t)  # (B, D)
            f2 = feedback.features(feedback.x0, feedback.t)  # (B, D)
        return infonce_reward(f1, f2, self.temperature).to(feedback.x0.device)

    def _track(self, p: Tensor, y: Tensor | None) -> None:
        """Fold a batch's p(bin | x₀) (B, K) into the running marginal and, when labels come, the per-class ones."""
        self.marginal = running_average(self.marginal, p.mean(dim=0), self.marginal_count, self.marginal_decay)
        self.marginal_count += 1
        if y is None:
            return
        y = y.detach().cpu().long()
        for c in y.unique().tolist():
            n = self.class_counts.get(c, 0)
            avg = self.class_marginals.get(c, self.uniform_bins)
            self.class_marginals[c] = running_average(avg, p[y == c].mean(dim=0), n, self.marginal_decay)
            self.class_counts[c] = n + 1

    # -- what it has learned ------------------------------------------------------------------------------------
    def _spread(self, p_bins: Tensor) -> Tensor:
        return (p_bins / self.bin_size)[self.bin_of_t]  # (T,)

    def distribution(self) -> Tensor:
        return self._spread(self.marginal)

    def class_distributions(self) -> dict[int, Tensor]:
        return {c: self._spread(m) for c, m in sorted(self.class_marginals.items())}

    # -- state --------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Tensor]:
        labels = sorted(self.class_marginals)
        state = {**super().state_dict(), "bins": torch.tensor(self.bins), "marginal": self.marginal.clone(),
                 "marginal_count": torch.tensor(self.marginal_count),
                 "baseline": torch.tensor(self.baseline, dtype=torch.float64), "updates": torch.tensor(self.updates),
                 "class_labels": torch.tensor(labels, dtype=torch.int64),
                 "class_marginals": torch.stack([self.class_marginals[c] for c in labels]) if labels
                 else torch.zeros(0, self.bins, dtype=torch.float64),
                 "class_counts": torch.tensor([self.class_counts[c] for c in labels], dtype=torch.int64)}
        if self.net is not None:
            state["image_shape"] = torch.tensor(self.image_shape)
            state.update({f"net.{k}": v.detach().cpu().clone() for k, v in self.net.state_dict().items()})
            for i, st in self.optimizer.state_dict()["state"].items():
                state.update({f"optim.{i}.{k}": torch.as_tensor(v).cpu().clone() for k, v in st.items()})
        return state

    def _network_from(self, state: dict[str, Tensor]) -> tuple[Selector | None, torch.optim.Adam | None]:
        """The network and Adam stored in `state` (built on the CPU), or (None, None) when it was not built yet."""
        if "image_shape" not in state:
            return None, None
        net, optimizer = self._build(tuple(int(v) for v in state["image_shape"]))
        for k, v in net.state_dict().items():
            got = state.get(f"net.{k}")
            if got is None or got.shape != v.shape:
                raise ValueError(f"learned policy state: net.{k} expected shape {tuple(v.shape)}, got "
                                 f"{None if got is None else tuple(got.shape)}")
        net.load_state_dict({k: state[f"net.{k}"] for k in net.state_dict()})
        moments: dict[int, dict[str, Tensor]] = {}
        for key, v in state.items():
            if key.startswith("optim."):
                _, i, name = key.split(".")
                moments.setdefault(int(i), {})[name] = v
        if moments:
            optimizer.load_state_dict({"state": moments, "param_groups": optimizer.state_dict()["param_groups"]})
        return net, optimizer

    def adopt_selector(self, state: dict[str, Tensor]) -> tuple[int, ...]:
        """Start from the selector g_φ stored in another learned policy's `state_dict()` (selector transfer): its
        network weights, a fresh Adam and fresh marginals; returns the image shape it was built for. Refused
        (one line, nothing changed) when that state has no network or another bin count or width."""
        if "image_shape" not in state:
            raise ValueError("selector state: holds no selector network (saved before the first batch)")
        if int(state["bins"]) != self.bins:
            raise ValueError(f"selector state: bins expected {self.bins}, got {int(state['bins'])}")
        head = state.get("net.head.weight")
        if head is not None and head.shape[1] != self.hidden:
            raise ValueError(f"selector state: hidden expected {self.hidden}, got {head.shape[1]}")
        net, _ = self._network_from({k: v for k, v in state.items() if not k.startswith("optim.")})
        self.net, self.optimizer = net, torch.optim.Adam(net.parameters(), lr=self.lr)
        self.image_shape = tuple(int(v) for v in state["image_shape"])
        return self.image_shape

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore `state_dict()`; a stored network is rebuilt from its `image_shape` even if this one is unbuilt.

        Everything is checked before anything changes, so a refused state leaves the policy as it was.
        """
        for key in STATE_KEYS:
            if key not in state:
                raise ValueError(f"{self.name} policy state: missing key {key!r}")
        if int(state["bins"]) != self.bins:
            raise ValueError(f"{self.name} policy state: bins expected {self.bins}, got {int(state['bins'])}")
        net, optimizer = self._network_from(state)
        previous = self.net, self.optimizer
        self.net = self.optimizer = None  # the base class then checks only the keys every learned state has
        try:
            super().load_state_dict(state)
        except ValueError:
            self.net, self.optimizer = previous
            raise
        self.net, self.optimizer = net, optimizer
        self.image_shape = None if net is None else tuple(int(v) for v in state["image_shape"])
        self.marginal, self.marginal_count = state["marginal"].double().clone(), int(state["marginal_count"])
        self.baseline, self.updates = float(state["baseline"]), int(state["updates"])
        labels = state["class_labels"].tolist()
        self.class_marginals = {c: state["class_marginals"][i].double().clone() for i, c in enumerate(labels)}
        self.class_counts = {c: int(n) for c, n in zip(labels, state["class_counts"].tolist())}
