"""Fixtures the test modules share: one torch thread for tiny models, and tiny trained run dirs."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import torch

from aselect_core.train import TrainConfig, train

TINY = dict(data="digits", model="DiT-T/4", image_size=8, batch_size=16)  # trains in about a second


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """One intra-op torch thread inside the block, the previous count restored after: tiny models gain nothing
    from more, and lose 2-50x to OpenMP spin-waits on the two shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """`single_thread` for a whole module; a module opts in with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
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
