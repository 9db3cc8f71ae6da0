"""Numeric precision of the hot loops (training step, feature extraction, sampling): one setting, one autocast.

`auto` is float32 on the CPU and bf16 autocast on CUDA (what every run so far used); `bf16` asks for bf16
autocast on the CPU too, which CPUs with AVX512-BF16 or AMX run 1.3-1.8x faster (`bench/train_throughput.py
--versus-reference`); features then differ from float32 by about 0.15% (relative norm), so it is opt-in.
`fp32` is float32 everywhere, CUDA included.
"""
from __future__ import annotations

import contextlib

import torch

PRECISIONS = ("auto", "fp32", "bf16")


def check_precision(value: str, field: str = "precision") -> str:
    """`value` when it is one of PRECISIONS; a one-line ValueError naming `field` otherwise."""
    if value not in PRECISIONS:
        raise ValueError(f"{field}: expected one of {', '.join(PRECISIONS)}, got {value!r}")
    return value


def autocast_dtype(device: torch.device | str, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype of `precision` on `device` (None: plain float32)."""
    kind = torch.device(device).type
    if precision == "bf16" or (precision == "auto" and kind == "cuda"):
        return torch.bfloat16
    return None


def autocast(device: torch.device | str, precision: str = "auto") -> contextlib.AbstractContextManager:
    """`torch.autocast` for `precision` on `device`, or a null context for float32."""
    dtype = autocast_dtype(device, check_precision(precision))
    return contextlib.nullcontext() if dtype is None else torch.autocast(torch.device(device).type, dtype=dtype)
