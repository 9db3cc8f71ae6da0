"""Optional `torch.compile` of a model's transformer blocks (issue 16 item 3: the GPU path, opt-in on the CPU).

The blocks hold nearly all the FLOPs, and every path — training, sampling, feature extraction, the learned
selector's reward — runs through them, so compiling them in place speeds up all of these while the state-dict keys
stay the reference ones (compiling the whole module would prefix them with `_orig_mod.`). Identical blocks share
one compiled graph (parameters are graph inputs), so compile time is that of one block per input shape. On this
repo's 2-core CPU, Inductor on the whole extraction forward ran ~1.2x the eager one after a 335 s compile
(bench/README.md; this per-block form is not timed there), so it is off by default: for long runs on a GPU.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from aselect_core.model.dit import DiTBlock


def compile_blocks(model: nn.Module, **options: Any) -> nn.Module:
    """Compile each of `model.blocks` in place with `torch.compile(**options)`; returns the model.

    A DiT block's `forward_parts` is compiled (its `forward` and `DiT.forward_features` both call it); any other
    block (the MAE's) is compiled through `nn.Module.compile`. Compile after copying the model (an EMA copy):
    the compiled callables belong to this instance."""
    for block in model.blocks:
        if isinstance(block, DiTBlock):
            block.forward_parts = torch.compile(block.forward_parts, **options)
        else:
            block.compile(**options)
    return model
