"""How a figure labels diffusion time: by the model's own convention (a DDPM timestep index, or a flow model's
continuous t) and, under each tick, the log SNR there, so grids of different schedules read on one scale.

`TimeAxis(schedule).layout(values, "xaxis")` is a plotly layout update; `TimeAxis()` (no schedule known) keeps
the plain "timestep t" label. `run_time_axis(run)` is the axis of a run dir's (or `analyze --model` folder's)
schedule.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from aselect_core.diffusion import Schedule, as_time, make_schedule
from aselect_core.train.rundir import RunDir

MAX_TICKS = 7  # labelled ticks per axis: two-line labels need room


@dataclass(frozen=True)
class TimeAxis:
    """A time axis labelled by `schedule`'s convention, with log SNR under each tick (None: plain "timestep t")."""

    schedule: Schedule | None = None

    @property
    def name(self) -> str:
        """The convention: 'timestep index (0 = clean, T - 1 = noisiest)', 'flow time t ∈ [0, 1] (...)'."""
        return "timestep t" if self.schedule is None else self.schedule.time_axis

    @property
    def title(self) -> str:
        """The axis title: the convention, and that the second tick line is the log SNR."""
        return self.name if self.schedule is None else f"{self.name} · log SNR below"

    def log_snr(self, t: int | float) -> float:
        """The schedule's natural-log SNR at t (±inf at a clean or pure-noise end)."""
        return float(self.schedule.log_snr(t))

    def snr_text(self, t: int | float) -> str:
        """log SNR at t to one decimal, '∞' / '−∞' at the ends."""
        snr = self.log_snr(t)
        return "∞" if snr == math.inf else "−∞" if snr == -math.inf else f"{snr:.1f}"

    def tick(self, t: int | float) -> str:
        """'500<br>-2.3': t as the model reads it over its log SNR."""
        return f"{t:g}<br>{self.snr_text(t)}"

    def label(self, t: int | float) -> str:
        """'500 · log SNR -2.3' (a slider's value); plain '500' without a schedule."""
        return f"{t:g}" if self.schedule is None else f"{t:g} · log SNR {self.snr_text(t)}"

    def ticks(self, values: Iterable[Any], max_ticks: int = MAX_TICKS) -> list[int | float]:
        """Up to `max_ticks` of the distinct sorted `values`: every k-th from the first, k the smallest stride that
        fits, so an evenly spaced grid keeps even ticks."""
        ts = sorted({as_time(v) for v in values})
        return ts[::math.ceil(len(ts) / max_ticks)]

    def layout(self, values: Iterable[Any], axis: str = "xaxis") -> dict[str, Any]:
        """`fig.update_layout(**axis.layout(timesteps))`: the title, and tick labels with log SNR when known."""
        if self.schedule is None:
            return {f"{axis}_title_text": self.title}
        ticks = self.ticks(values)
        return {f"{axis}_title_text": self.title, f"{axis}_tickvals": ticks,
                f"{axis}_ticktext": [self.tick(t) for t in ticks]}


def run_time_axis(run: str | Path) -> TimeAxis:
    """The time axis of a run's schedule (config.json, or model.json of `aselect analyze --model`)."""
    return TimeAxis(make_schedule(*RunDir(Path(run)).info().schedule))
