"""Noise schedules: how x_t is formed from clean x_0 and noise eps, and the SNR of each time.

`NoiseSchedule`: discrete-time DDPM, q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I). Timesteps are integers
in [0, T); t = 0 is the least noisy. `linear` is DiT's / DDPM's beta schedule (beta from 1e-4 to 0.02, scaled to
T); `cosine` is Nichol & Dhariwal's (2021) squared-cosine abar.

`FlowSchedule`: continuous-time flow-matching interpolants x_t = alpha(t) x_0 + sigma(t) eps, t a float in [0, 1],
in the time convention of the model family (`FLOW_PATHS`). SiT (willisma/SiT, transport/path.py) puts DATA at
t = 1 and noise at t = 0: its Linear path (ICPlan) is x_t = t x_0 + (1 - t) eps, so SNR(t) = (t / (1 - t))²;
rectified flow / SD3 put noise at t = 1: x_t = (1 - t) x_0 + t eps, SNR(t) = ((1 - t) / t)².

Both expose the same surface: `q_sample(x0, t, noise)`, `snr(t)`, `log_snr(t)`, `times(t, n)` (a batch of one
time in the dtype the model reads), `check_timesteps(ts)`, `identity` (for cache keys; `make_schedule(*identity)`
rebuilds the schedule) and `time_axis` (a label naming the convention, for figures).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import torch
from torch import Tensor


def _linear_betas(num_timesteps: int, max_beta: float = 0.999) -> Tensor:
    """DDPM/DiT linear betas, rescaled so that any T covers the same noise range as T = 1000.

    Clipped at max_beta like the cosine schedule: for T <= 20 the rescaled end beta reaches 1 or more,
    which would make abar zero or negative.
    """
    scale = 1000.0 / num_timesteps
    return torch.linspace(scale * 1e-4, scale * 0.02, num_timesteps, dtype=torch.float64).clamp(max=max_beta)


def _cosine_betas(num_timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """Improved-DDPM cosine schedule: abar(u) = cos²((u + s) / (1 + s) · π/2), betas clipped at max_beta."""
    u = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    abar = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - abar[1:] / abar[:-1]).clamp(max=max_beta)


SCHEDULES: dict[str, Callable[[int], Tensor]] = {"linear": _linear_betas, "cosine": _cosine_betas}


class NoiseSchedule:
    """A variance-preserving schedule with T discrete steps; all tables are float64 on the CPU."""

    def __init__(self, kind: str = "linear", num_timesteps: int = 1000):
        if kind not in SCHEDULES:
            raise ValueError(f"schedule kind: expected one of {sorted(SCHEDULES)}, got {kind!r}")
        if num_timesteps < 2:
            raise ValueError(f"num_timesteps: expected an integer >= 2, got {num_timesteps}")
        self.kind = kind
        self.num_timesteps = num_timesteps
        self.betas = SCHEDULES[kind](num_timesteps)  # (T,)
        self.alphas_cumprod = torch.cumprod(1.0 - self.betas, dim=0)  # (T,) abar_t, decreasing

    time_axis = "timestep index (0 = clean, T - 1 = noisiest)"

    @property
    def identity(self) -> list:
        """[kind, num_timesteps]: what a feature bank's cache key records; `make_schedule(*identity)` rebuilds it."""
        return [self.kind, self.num_timesteps]

    def times(self, t: int, n: int, device: torch.device | str = "cpu") -> Tensor:
        """(n,) int64 copies of timestep t, as the DiT reads them."""
        return torch.full((n,), int(t), dtype=torch.long, device=device)

    def default_times(self, n: int = 20) -> list[int]:
        """n evenly spaced timesteps from 0 (clean): 0, 50, ..., 950 for T = 1000."""
        return sorted({int(i * self.num_timesteps // n) for i in range(n)})

    def check_timesteps(self, timesteps: Iterable[int]) -> list[int]:
        """Sorted distinct integer timesteps, each in [0, T); a one-line ValueError otherwise."""
        return check_timesteps(timesteps, self.num_timesteps)

    def _gather(self, table: Tensor, t: Tensor, like: Tensor) -> Tensor:
        """table[t] reshaped to broadcast against `like` (B, ...), in like's dtype and device."""
        out = table.to(like.device)[t.to(like.device).long()].to(like.dtype)
        return out.view(-1, *([1] * (like.dim() - 1)))

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor | None = None) -> Tensor:
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise, for x0 (B, ...) and t (B,)."""
        noise = torch.randn_like(x0) if noise is None else noise
        abar = self._gather(self.alphas_cumprod, t, x0)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise

    def predict_x0(self, xt: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """Invert q_sample given the noise (or a prediction of it)."""
        abar = self._gather(self.alphas_cumprod, t, xt)
        return (xt - (1 - abar).sqrt() * eps) / abar.sqrt()

    def snr(self, t: Tensor | int) -> Tensor:
        """Signal-to-noise ratio abar_t / (1 - abar_t), float64, decreasing in t."""
        abar = self.alphas_cumprod[torch.as_tensor(t).long()]
        return abar / (1 - abar)

    def log_snr(self, t: Tensor | int) -> Tensor:
        """log SNR(t) = log abar_t - log(1 - abar_t), float64."""
        abar = self.alphas_cumprod[torch.as_tensor(t).long()]
        return abar.log() - torch.log1p(-abar)

    def sigma(self, t: Tensor | int) -> Tensor:
        """Noise level of the equivalent variance-exploding process, sigma = sqrt((1 - abar) / abar)."""
        return self.snr(t).rsqrt()

    def timestep_of_sigma(self, sigma: Tensor) -> Tensor:
        """The discrete timestep whose sigma is nearest in log space (used to map EDM/SD3 samplers)."""
        log_sig = self.sigma(torch.arange(self.num_timesteps)).log()  # (T,) increasing
        idx = torch.searchsorted(log_sig, sigma.double().log().clamp(log_sig[0], log_sig[-1]))
        idx = idx.clamp(1, self.num_timesteps - 1)
        left_closer = (sigma.double().log() - log_sig[idx - 1]).abs() <= (log_sig[idx] - sigma.double().log()).abs()
        return torch.where(left_closer, idx - 1, idx).long()

    def __repr__(self) -> str:
        return f"NoiseSchedule(kind={self.kind!r}, num_timesteps={self.num_timesteps})"


def as_time(t: Any) -> int | float:
    """A timestep read back from a table as a plain number: an int for a whole value (a DDPM index, also when a
    column came back as floats), a float for a flow model's fractional t. Both compare and hash alike (0 == 0.0)."""
    return int(t) if float(t).is_integer() else float(t)


def check_timesteps(timesteps: Iterable[int], num_timesteps: int) -> list[int]:
    """Sorted distinct integers in [0, num_timesteps); a one-line ValueError for an empty or out-of-range list."""
    ts = [int(t) for t in timesteps]
    bad = [t for t in ts if not 0 <= t < num_timesteps]
    if not ts or bad:
        raise ValueError(f"timesteps: expected integers in [0, {num_timesteps}), got {bad or ts}")
    return sorted(set(ts))


# -- flow matching ----------------------------------------------------------------------------------------------
def _sit_vp_alpha(t: Tensor, sigma_min: float = 0.1, sigma_max: float = 20.0) -> Tensor:
    """SiT's VP path (VPCPlan): alpha(t) = exp(-(1-t)² (sigma_max - sigma_min) / 4 - (1-t) sigma_min / 2)."""
    return torch.exp(-0.25 * (1 - t) ** 2 * (sigma_max - sigma_min) - 0.5 * (1 - t) * sigma_min)


# kind -> t (float64) -> (alpha(t), sigma(t)), the coefficients of x_0 (data) and eps (noise) in x_t.
FLOW_PATHS: dict[str, Callable[[Tensor], tuple[Tensor, Tensor]]] = {
    "sit-linear": lambda t: (t, 1 - t),  # SiT path_type "Linear" (ICPlan); data at t = 1
    "sit-gvp": lambda t: (torch.sin(t * math.pi / 2), torch.cos(t * math.pi / 2)),  # "GVP" (GVPCPlan)
    "sit-vp": lambda t: (_sit_vp_alpha(t), (1 - _sit_vp_alpha(t) ** 2).sqrt()),  # "VP" (VPCPlan)
    "rf-linear": lambda t: (1 - t, t),  # rectified flow / SD3: noise at t = 1
}


class FlowSchedule:
    """A flow-matching interpolant x_t = alpha(t) x_0 + sigma(t) eps over continuous t in [0, 1] (`FLOW_PATHS`).

    t is the model's own time, fed to its timestep embedder unscaled (SiT embeds t in [0, 1] directly).
    """

    def __init__(self, kind: str = "sit-linear"):
        if kind not in FLOW_PATHS:
            raise ValueError(f"flow schedule kind: expected one of {sorted(FLOW_PATHS)}, got {kind!r}")
        self.kind = kind
        alpha0, alpha1 = FLOW_PATHS[kind](torch.tensor([0.0, 1.0], dtype=torch.float64))[0].tolist()
        self.data_at = 1.0 if alpha1 > alpha0 else 0.0  # the end of [0, 1] where x_t is (nearly) clean data

    @property
    def identity(self) -> list:
        """[kind]: what a feature bank's cache key records; `make_schedule(*identity)` rebuilds it."""
        return [self.kind]

    @property
    def time_axis(self) -> str:
        return f"flow time t ∈ [0, 1] ({self.data_at:g} = data, {1 - self.data_at:g} = noise)"

    def coefficients(self, t: Tensor | float) -> tuple[Tensor, Tensor]:
        """(alpha(t), sigma(t)) in float64, for t a float or a tensor of any shape."""
        return FLOW_PATHS[self.kind](torch.as_tensor(t, dtype=torch.float64))

    def times(self, t: float, n: int, device: torch.device | str = "cpu") -> Tensor:
        """(n,) float64 copies of time t, as the model reads them (its embedder casts to float32)."""
        return torch.full((n,), float(t), dtype=torch.float64, device=device)

    def default_times(self, n: int = 20) -> list[float]:
        """n evenly spaced times from the data end (clean) towards, not reaching, the noise end."""
        step = (1 - 2 * self.data_at) / n  # towards noise: +1/n when data is at 0, -1/n when data is at 1
        return sorted(round(self.data_at + i * step, 10) for i in range(n))

    def check_timesteps(self, timesteps: Iterable[float]) -> list[float]:
        """Sorted distinct floats in [0, 1]; a one-line ValueError otherwise."""
        try:
            ts = [float(t) for t in timesteps]
        except (TypeError, ValueError):
            raise ValueError(f"timesteps: expected numbers in [0, 1] ({self.time_axis}), got {timesteps!r}") from None
        bad = [t for t in ts if not 0.0 <= t <= 1.0]
        if not ts or bad:
            raise ValueError(f"timesteps: expected numbers in [0, 1] ({self.time_axis}), got {bad or ts}")
        return sorted(set(ts))

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor | None = None) -> Tensor:
        """x_t = alpha(t) x0 + sigma(t) noise, for x0 (B, ...) and t (B,) floats in [0, 1]."""
        noise = torch.randn_like(x0) if noise is None else noise
        alpha, sigma = FLOW_PATHS[self.kind](t.to(x0.device, torch.float64))  # (B,) each
        shape = (-1, *([1] * (x0.dim() - 1)))
        return alpha.to(x0.dtype).view(shape) * x0 + sigma.to(x0.dtype).view(shape) * noise

    def snr(self, t: Tensor | float) -> Tensor:
        """Signal-to-noise ratio alpha(t)² / sigma(t)², float64 (inf where sigma is 0)."""
        alpha, sigma = self.coefficients(t)
        return alpha ** 2 / sigma ** 2

    def log_snr(self, t: Tensor | float) -> Tensor:
        """log SNR(t) = 2 (log alpha - log sigma), float64."""
        alpha, sigma = self.coefficients(t)
        return 2 * (alpha.log() - sigma.log())

    def __repr__(self) -> str:
        return f"FlowSchedule(kind={self.kind!r})"


Schedule = NoiseSchedule | FlowSchedule

# every schedule kind -> its class: the DDPM beta schedules beside the flow-matching interpolants
SCHEDULE_KINDS: dict[str, type[NoiseSchedule] | type[FlowSchedule]] = {
    **{kind: NoiseSchedule for kind in SCHEDULES}, **{kind: FlowSchedule for kind in FLOW_PATHS}}


def make_schedule(kind: str, *args: int) -> Schedule:
    """The schedule of `kind` (`SCHEDULE_KINDS`); `make_schedule(*s.identity)` rebuilds s."""
    if kind not in SCHEDULE_KINDS:
        raise ValueError(f"schedule kind: expected one of {sorted(SCHEDULE_KINDS)}, got {kind!r}")
    return SCHEDULE_KINDS[kind](kind, *args)
