"""Fixtures the test modules share: one torch thread for tiny models, and tiny trained run dirs."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from analysis.mi.infonce import single_thread
from aselect_core.train import TrainConfig, train

TINY = dict(data="digits", model="DiT-T/4", image_size=8, batch_size=16)  # trains in about a second


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One torch thread for a whole module, restored after: tiny models gain nothing from more threads and lose
    2-50x to OpenMP spin-waits on shared cores. A module opts in with `pytestmark = pytest.mark.usefixtures(...)`."""
    with single_thread():
        yield


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Callable[..., Path]:
    """Factory: `tiny_run(out=None, steps=6, **fields)` trains TrainConfig(TINY, steps, checkpoint_every=steps,
    **fields) on one thread into `out` (default: a fresh temporary folder's `r`) and returns the run dir."""
    def make(out: Path | None = None, steps: int = 6, **fields: Any) -> Path:
        out = out or tmp_path_factory.mktemp("runs") / "r"
        config = TrainConfig(**{**TINY, "steps": steps, "checkpoint_every": steps, **fields, "out": str(out)})
        with single_thread():
            return train(config, progress=False)
    return make
