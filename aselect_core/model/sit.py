"""SiT checkpoints (Ma et al., 2024; willisma/SiT): DiT's backbone trained by flow matching over continuous t.

SiT's models.py is DiT's layer for layer (timm PatchEmbed / Attention / Mlp, adaLN-Zero blocks, `final_layer`,
the fixed sin-cos `pos_embed`, GLIDE's timestep embedding without frequency shift), so a SiT state dict has
DiT's keys (`x_embedder`, `t_embedder`, `y_embedder`, `pos_embed`, `blocks.i.*`, `final_layer`) and `load_dit`
reads it into a `DiT` that computes what SiT computes (SiT's forward then drops the learned-sigma half of the
output channels, which a velocity model never trains; the features are the same). What differs is time:

- SiT's transport (transport/path.py) forms x_t = alpha(t) x_data + sigma(t) eps with t in [0, 1] and DATA AT
  t = 1, noise at t = 0: the default Linear path (ICPlan) has alpha = t, sigma = 1 - t, and its ODE sampler
  integrates from t = 0 (noise) to t = 1 (data). The model reads that t unscaled and by default predicts the
  velocity d x_t / dt = x_data - eps.
- So the probe grid's `timestep` column of a SiT holds SiT's own t (1 = clean, 0 = pure noise), and
  SNR(t) = (t / (1 - t))² on the Linear path (`FlowSchedule.snr`) — the reverse of DDPM's index.

The keys cannot tell a SiT from a DiT, so a SiT is named by a model spec: `sit:PATH` (PATH any file `load_dit`
reads) takes the path type from SiT train.py's checkpoint `args.path_type` (Linear, GVP or VP), and Linear
when there is none (the released SiT-XL-2-256x256.pt is a bare state dict of the Linear model); `KIND:PATH`
with a `FLOW_PATHS` kind (`sit-linear`, `sit-gvp`, `sit-vp`, `rf-linear`) names the interpolant outright,
e.g. `rf-linear:PATH` for a model of this architecture trained with noise at t = 1.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from aselect_core.diffusion import FLOW_PATHS, FlowSchedule
from aselect_core.io import CheckpointError
from aselect_core.model.dit import DiT
from aselect_core.model.load import checkpoint_format, load_dit, torch_load

SIT_PATH_TYPES = {"Linear": "sit-linear", "GVP": "sit-gvp", "VP": "sit-vp"}  # train.py --path-type -> kind
SPEC_KINDS: dict[str, str | None] = {"sit": None, **{k: k for k in FLOW_PATHS}}  # spec prefix -> kind (None: read)
DEFAULT_KIND = "sit-linear"


def is_flow_spec(spec: str | os.PathLike) -> bool:
    """Whether `spec` is `PREFIX:PATH` with a `SPEC_KINDS` prefix (a flow-matching model)."""
    prefix, sep, _ = str(spec).partition(":")
    return bool(sep) and prefix in SPEC_KINDS


def flow_spec_path(spec: str | os.PathLike) -> Path:
    """The file a flow model spec `PREFIX:PATH` names."""
    return Path(str(spec).partition(":")[2])


def recorded_path_type(path: Path) -> str | None:
    """`args.path_type` of a SiT train.py checkpoint ({"model", "ema", "opt", "args"}); None for other files.

    The file is memory-mapped, so its tensors are not read."""
    if checkpoint_format(path) != "torch":
        return None
    obj = torch_load(path, "cpu", mmap=True)
    return getattr(obj.get("args"), "path_type", None) if isinstance(obj, dict) else None


def load_sit(path: str | os.PathLike, kind: str | None = None, weights: str = "ema",
             map_location: Any = "cpu") -> tuple[DiT, FlowSchedule]:
    """A SiT-format checkpoint as a DiT (eval mode) and the FlowSchedule of its time convention.

    kind: a `FLOW_PATHS` kind; None = the checkpoint's `args.path_type`, else sit-linear. A kind that
    contradicts the recorded path type is refused.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    recorded = recorded_path_type(path)
    if recorded is not None and recorded not in SIT_PATH_TYPES:
        raise CheckpointError(f"{path}: args.path_type {recorded!r} is not a SiT path type; expected one of "
                              f"{sorted(SIT_PATH_TYPES)}")
    found = SIT_PATH_TYPES.get(recorded)
    if kind is not None and found is not None and kind != found:
        raise CheckpointError(f"{path}: trained with path_type {recorded!r} ({found}), but {kind} was asked for")
    schedule = FlowSchedule(kind or found or DEFAULT_KIND)
    model = load_dit(path, weights=weights, map_location=map_location)
    if model.config_name:
        model.config_name = model.config_name.replace("DiT-", "SiT-", 1)
    return model, schedule


def load_flow_spec(spec: str | os.PathLike, weights: str = "ema", map_location: Any = "cpu") -> tuple[DiT, FlowSchedule]:
    """`load_sit` of a model spec `sit:PATH` or `KIND:PATH` (see the module docstring)."""
    if not is_flow_spec(spec):
        raise ValueError(f"model spec: expected PREFIX:PATH with PREFIX one of {sorted(SPEC_KINDS)}, got {str(spec)!r}")
    prefix = str(spec).partition(":")[0]
    return load_sit(flow_spec_path(spec), SPEC_KINDS[prefix], weights=weights, map_location=map_location)
