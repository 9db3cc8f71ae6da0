"""Load a DiT from this project's checkpoints, official DiT `.pt` files or diffusers folders; save standalone ones.
`load_mae` reads the MAE baseline's checkpoints (metadata `aselect.mae`), `load_model` either kind.

Formats `load_dit` accepts (nothing here executes pickled code):
- `.safetensors` written by the trainer (tensors under `model.` / `ema.`, metadata `aselect.dit` = JSON of
  `{"name": ..., **DiT.config}`) or by `save_dit` (bare DiT keys + the same metadata). A run dir (its
  `latest.json` names the checkpoint) works too. Without the metadata the config is inferred from shapes.
- official DiT `.pt`: a bare state dict (the released weights) or train.py's `{"model", "ema", "opt", "args"}`,
  read with `torch.load(weights_only=True)` (argparse.Namespace is the one extra class allowed).
- diffusers `DiTTransformer2DModel` folders (`config.json` + `diffusion_pytorch_model.safetensors|.bin`, or a
  pipeline folder with a `transformer/` sub-folder). Keys are remapped to the reference names. diffusers gives
  every block its own timestep/label embedder; the reference shares one, so those must be identical across
  blocks (true of checkpoints converted from official DiT) and a folder where they differ is refused. diffusers'
  timestep frequencies (`downscale_freq_shift=1`) and pre-MLP LayerNorm eps (`norm_eps`) are reproduced through
  the DiT switches `time_freq_shift` and `mlp_norm_eps`, so outputs match diffusers' to float32 rounding.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import re
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as st_save
from torch import Tensor

from aselect_core.io import CheckpointError, atomic_write_bytes, read_json, verified_bytes
from aselect_core.model.dit import DIT_SIZES, DiT, sincos_pos_embed_2d
from aselect_core.model.mae import MAE

METADATA_KEY = "aselect.dit"
MAE_METADATA_KEY = "aselect.mae"  # the MAE's constructor args, as METADATA_KEY holds the DiT's
WEIGHT_PREFIXES = ("ema", "model")
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
PAPER_HEADS = {hidden: heads for _, hidden, heads in DIT_SIZES.values()}  # hidden_size -> num_heads

Reader = Callable[[Path, str, Any], tuple[dict[str, Tensor], dict[str, Any] | None]]


# ---------------------------------------------------------------------------------------------------- saving

def save_dit(model: DiT, path: str | os.PathLike) -> Path:
    """Write `model` as a standalone safetensors file (bare keys + `aselect.dit` metadata), atomically."""
    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    data = st_save(tensors, metadata={METADATA_KEY: json.dumps({"name": model.config_name, **model.config})})
    atomic_write_bytes(path, data)
    return path


# ---------------------------------------------------------------------------------------------------- loading

def load_dit(path: str | os.PathLike, weights: str = "ema", map_location: Any = "cpu",
             num_heads: int | None = None) -> DiT:
    """Load a DiT (in eval mode) from any supported checkpoint format (see the module docstring).

    weights: "ema" or "model", for files that hold both (falls back to the other when one is absent).
    num_heads: used only when the config is inferred from shapes and the hidden size is not a paper size.
    """
    path = Path(path)
    if weights not in WEIGHT_PREFIXES:
        raise ValueError(f"load_dit: weights must be one of {WEIGHT_PREFIXES}, got {weights!r}")
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    state, config = READERS[checkpoint_format(path)](path, weights, map_location)
    return build_from_state(config or infer_config(state, path, num_heads), state, path)


def checkpoint_format(path: Path) -> str:
    """The `READERS` key for `path`: "run", "diffusers", "safetensors" or "torch"."""
    if path.is_dir():
        if (path / "latest.json").is_file():
            return "run"
        if (path / "config.json").is_file() or (path / "transformer" / "config.json").is_file():
            return "diffusers"
        raise CheckpointError(f"{path}: folder is neither a run dir (latest.json) nor a diffusers model (config.json)")
    if path.suffix == ".safetensors":
        return "safetensors"
    if path.suffix in TORCH_SUFFIXES:
        return "torch"
    raise CheckpointError(f"{path}: unknown checkpoint type; expected .safetensors, {'/'.join(TORCH_SUFFIXES)}, "
                          "a run dir or a diffusers folder")


def select_weights(tensors: dict[str, Any], weights: str) -> dict[str, Any]:
    """Strip the `ema.`/`model.` prefix (preferring `weights`); bare DiT keys pass through unchanged."""
    present = [p for p in (weights, *WEIGHT_PREFIXES) if any(k.startswith(f"{p}.") for k in tensors)]
    if not present:
        return tensors
    prefix = f"{present[0]}."
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def safetensors_load(path: Path, map_location: Any) -> tuple[dict[str, Tensor], dict[str, str]]:
    """(tensors, string metadata) of a safetensors file, with a one-line error when unreadable."""
    try:
        with safe_open(path, framework="pt", device=str(map_location)) as f:
            return {k: f.get_tensor(k) for k in f.keys()}, f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None


def read_safetensors(path: Path, weights: str, map_location: Any) -> tuple[dict[str, Tensor], dict[str, Any] | None]:
    tensors, metadata = safetensors_load(path, map_location)
    try:
        config = json.loads(metadata[METADATA_KEY]) if METADATA_KEY in metadata else None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: metadata {METADATA_KEY!r} is not valid JSON ({e.msg})") from None
    return select_weights(tensors, weights), config


def read_run(path: Path, weights: str, map_location: Any) -> tuple[dict[str, Tensor], dict[str, Any] | None]:
    """The checkpoint latest.json names, verified against its sidecar's sha256 first (as training resumes it)."""
    checkpoint = run_checkpoint(path)
    verified_bytes(checkpoint)
    return read_safetensors(checkpoint, weights, map_location)


def run_checkpoint(path: Path) -> Path:
    """The checkpoint a run dir's `latest.json` = {"checkpoint": "checkpoints/step_XXXXXXX.safetensors", ...} names."""
    checkpoint = read_json(path / "latest.json", CheckpointError).get("checkpoint")
    if not checkpoint:
        raise CheckpointError(f"{path / 'latest.json'}: expected a 'checkpoint' entry (no checkpoint written yet?)")
    if not (path / checkpoint).is_file():
        raise CheckpointError(f"{path / checkpoint}: checkpoint named by latest.json not found")
    return path / checkpoint


def torch_load(path: Path, map_location: Any, mmap: bool = False) -> Any:
    """torch.load with weights_only=True (plus argparse.Namespace, for train.py's `args`): never runs code.

    mmap=True maps the tensors instead of reading them (cheap when only the non-tensor entries are wanted)."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as e:
        lines = str(e).strip().splitlines() or [type(e).__name__]
        reason = next((line.strip() for line in lines if "Unsupported global" in line), lines[0].strip())
        reason = reason.split(". Please use")[0]  # drop torch's advice to allowlist the class
        raise CheckpointError(f"{path}: refused or failed by torch.load(weights_only=True): {reason}") from None


def read_torch(path: Path, weights: str, map_location: Any) -> tuple[dict[str, Tensor], None]:
    """Official DiT `.pt`: a bare state dict, or a dict whose `model`/`ema` entries are state dicts."""
    obj = torch_load(path, map_location)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a state dict or {{'model', 'ema'}} dict, got {type(obj).__name__}")
    nested = {f"{p}.{k}": v for p in WEIGHT_PREFIXES if isinstance(obj.get(p), dict) for k, v in obj[p].items()}
    state = select_weights(nested or obj, weights)
    bad = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(f"{path}: expected tensors only in the state dict, {bad[0]!r} is not a tensor")
    return state, None


# diffusers key -> reference key, applied with re.fullmatch; qkv and the per-block embedders are handled apart.
DIFFUSERS_RENAMES = [
    (r"pos_embed\.proj\.(weight|bias)", r"x_embedder.proj.\1"),
    (r"transformer_blocks\.0\.norm1\.emb\.timestep_embedder\.linear_1\.(weight|bias)", r"t_embedder.mlp.0.\1"),
    (r"transformer_blocks\.0\.norm1\.emb\.timestep_embedder\.linear_2\.(weight|bias)", r"t_embedder.mlp.2.\1"),
    (r"transformer_blocks\.0\.norm1\.emb\.class_embedder\.embedding_table\.weight",
     r"y_embedder.embedding_table.weight"),
    (r"transformer_blocks\.(\d+)\.norm1\.linear\.(weight|bias)", r"blocks.\1.adaLN_modulation.1.\2"),
    (r"transformer_blocks\.(\d+)\.attn1\.to_out\.0\.(weight|bias)", r"blocks.\1.attn.proj.\2"),
    (r"transformer_blocks\.(\d+)\.ff\.net\.0\.proj\.(weight|bias)", r"blocks.\1.mlp.fc1.\2"),
    (r"transformer_blocks\.(\d+)\.ff\.net\.2\.(weight|bias)", r"blocks.\1.mlp.fc2.\2"),
    (r"proj_out_1\.(weight|bias)", r"final_layer.adaLN_modulation.1.\1"),
    (r"proj_out_2\.(weight|bias)", r"final_layer.linear.\1"),
]
DIFFUSERS_QKV = re.compile(r"transformer_blocks\.(\d+)\.attn1\.to_([qkv])\.(weight|bias)")
DIFFUSERS_BLOCK_EMB = re.compile(r"transformer_blocks\.([1-9]\d*)\.norm1\.emb\.(.+)")
# config.json fields whose value the reference architecture needs (diffusers' defaults when absent).
DIFFUSERS_REQUIRED = {"norm_type": "ada_norm_zero", "activation_fn": "gelu-approximate",
                      "norm_elementwise_affine": False, "attention_bias": True}


def rename_diffusers(state: dict[str, Tensor], path: Path) -> dict[str, Tensor]:
    """diffusers DiTTransformer2DModel keys -> reference DiT keys (to_q/to_k/to_v concatenated into qkv)."""
    out, qkv = {}, {}
    for key, value in state.items():
        if m := DIFFUSERS_BLOCK_EMB.fullmatch(key):
            if not torch.equal(value, state.get(f"transformer_blocks.0.norm1.emb.{m[2]}", torch.empty(0))):
                raise CheckpointError(f"{path}: {key} differs from block 0's; the reference DiT shares one "
                                      "timestep/label embedder across blocks, so per-block embedders must be equal")
        elif m := DIFFUSERS_QKV.fullmatch(key):
            qkv.setdefault((m[1], m[3]), {})[m[2]] = value
        else:
            new = next((re.sub(p, r, key) for p, r in DIFFUSERS_RENAMES if re.fullmatch(p, key)), None)
            if new is None:
                raise CheckpointError(f"{path}: unexpected key {key!r} for a DiTTransformer2DModel")
            out[new] = value
    for (block, kind), parts in qkv.items():
        if len(parts) != 3:
            raise CheckpointError(f"{path}: block {block} attn1 {kind}: expected to_q, to_k and to_v")
        out[f"blocks.{block}.attn.qkv.{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out


def diffusers_config(cfg: dict[str, Any], state: dict[str, Tensor], folder: Path) -> dict[str, Any]:
    """DiT constructor args (+ "name") from a DiTTransformer2DModel config.json and its remapped tensors."""
    try:
        hidden, heads = cfg["num_attention_heads"] * cfg["attention_head_dim"], cfg["num_attention_heads"]
        in_channels, patch, depth = cfg["in_channels"], cfg["patch_size"], cfg["num_layers"]
        out_channels = cfg.get("out_channels") or in_channels
        if out_channels not in (in_channels, 2 * in_channels):
            raise CheckpointError(f"{folder / 'config.json'}: out_channels must be in_channels or twice it (learned "
                                  f"sigma), got {out_channels}")
        num_classes = cfg["num_embeds_ada_norm"]
        has_null = state["y_embedder.embedding_table.weight"].shape[0] > num_classes
        return dict(name=paper_name(depth, hidden, heads, patch), input_size=cfg["sample_size"], patch_size=patch,
                    in_channels=in_channels, hidden_size=hidden, depth=depth, num_heads=heads,
                    mlp_ratio=state["blocks.0.mlp.fc1.weight"].shape[0] / hidden,
                    class_dropout_prob=0.1 if has_null else 0.0, num_classes=num_classes,
                    learn_sigma=out_channels == 2 * in_channels, time_freq_shift=1.0,
                    mlp_norm_eps=cfg.get("norm_eps", 1e-5))
    except KeyError as e:
        raise CheckpointError(f"{folder}: expected {e.args[0]!r} in config.json or the weights") from None


def read_diffusers(path: Path, weights: str, map_location: Any) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """A `save_pretrained` folder of DiTTransformer2DModel (or a pipeline folder with `transformer/`)."""
    folder = path / "transformer" if (path / "transformer" / "config.json").is_file() else path
    cfg = read_json(folder / "config.json", CheckpointError)
    for field, expected in DIFFUSERS_REQUIRED.items():
        if cfg.get(field, expected) != expected:
            raise CheckpointError(f"{folder / 'config.json'}: field {field!r} must be {expected!r} for a DiT, "
                                  f"got {cfg[field]!r}")
    file = next((folder / n for n in DIFFUSERS_WEIGHTS if (folder / n).is_file()), None)
    if file is None:
        raise CheckpointError(f"{folder}: expected one of {', '.join(DIFFUSERS_WEIGHTS)}")
    raw = safetensors_load(file, map_location)[0] if file.suffix == ".safetensors" else torch_load(file, map_location)
    state = rename_diffusers(raw, file)
    config = diffusers_config(cfg, state, folder)
    hidden, grid = config["hidden_size"], config["input_size"] // config["patch_size"]
    state["pos_embed"] = sincos_pos_embed_2d(hidden, grid).unsqueeze(0).to(map_location)  # (1, N, D)
    return state, config


READERS: dict[str, Reader] = {"run": read_run, "diffusers": read_diffusers, "safetensors": read_safetensors,
                              "torch": read_torch}


def paper_name(depth: int, hidden_size: int, num_heads: int, patch_size: int) -> str | None:
    """The `DIT_CONFIGS` name of this shape (e.g. "DiT-XL/2"), or None."""
    size = next((s for s, shape in DIT_SIZES.items() if shape == (depth, hidden_size, num_heads)), None)
    return f"DiT-{size}/{patch_size}" if size and patch_size in (2, 4, 8) else None


def infer_config(state: dict[str, Tensor], path: Path, num_heads: int | None = None) -> dict[str, Any]:
    """DiT constructor args from reference-named tensor shapes.

    num_heads is not visible in shapes: the paper's value for the hidden size unless given. The label table is
    assumed to carry the null row (the reference always trains with class_dropout_prob 0.1).
    """
    needed = ("pos_embed", "x_embedder.proj.weight", "final_layer.linear.weight", "y_embedder.embedding_table.weight",
              "blocks.0.mlp.fc1.weight")
    missing = [k for k in needed if k not in state]
    if missing:
        raise CheckpointError(f"{path}: expected DiT tensors, missing {missing[0]!r} (and no {METADATA_KEY} metadata)")
    num_patches, hidden = state["pos_embed"].shape[-2:]
    _, in_channels, patch, _ = state["x_embedder.proj.weight"].shape
    grid = math.isqrt(num_patches)
    heads = num_heads or PAPER_HEADS.get(hidden)
    if heads is None:
        raise CheckpointError(f"{path}: cannot infer num_heads for hidden size {hidden}; "
                              "pass load_dit(..., num_heads=)")
    out_channels = state["final_layer.linear.weight"].shape[0] // (patch * patch)
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    return dict(name=paper_name(depth, hidden, heads, patch), input_size=grid * patch, patch_size=patch,
                in_channels=in_channels, hidden_size=hidden, depth=depth, num_heads=heads,
                mlp_ratio=state["blocks.0.mlp.fc1.weight"].shape[0] / hidden, class_dropout_prob=0.1,
                num_classes=state["y_embedder.embedding_table.weight"].shape[0] - 1,
                learn_sigma=out_channels == 2 * in_channels)


def check_state(expected: dict[str, Tensor], state: dict[str, Tensor], path: Path) -> None:
    """One-line error for the first missing, unexpected or wrongly shaped tensor."""
    missing = [k for k in expected if k not in state]
    if missing:
        raise CheckpointError(f"{path}: missing tensor {missing[0]!r} ({len(missing)} missing) for this DiT config")
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        raise CheckpointError(f"{path}: unexpected tensor {unexpected[0]!r} ({len(unexpected)} unexpected)")
    for k, v in expected.items():
        if state[k].shape != v.shape:
            raise CheckpointError(f"{path}: tensor {k!r} has shape {tuple(state[k].shape)}, expected {tuple(v.shape)}")


def build_from_state(config: dict[str, Any], state: dict[str, Tensor], path: Path,
                     cls: type[DiT] | type[MAE] = DiT) -> DiT | MAE:
    """Build the `cls` model of `config` (+ optional "name") on the meta device and adopt the tensors of `state`.

    Floating tensors are adopted as float32 whatever their stored precision (slim exports are float16), so a
    loaded model always computes in float32 unless the caller casts it.
    """
    config = dict(config)
    name = config.pop("name", None)
    try:
        with torch.device("meta"):
            model = cls(**config)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: config is not a valid {cls.__name__} config ({e})") from None
    check_state(model.state_dict(), state, path)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, assign=True)
    for fixed in ("pos_embed", "decoder_pos_embed"):  # the sin-cos tables are buffers in all but name
        if hasattr(model, fixed):
            getattr(model, fixed).requires_grad_(False)
    model.config_name = name
    return model.eval()


# ---------------------------------------------------------------------------------------------------- MAE

def mae_metadata(model: MAE) -> dict[str, str]:
    """safetensors metadata that lets `load_mae` rebuild the architecture."""
    return {MAE_METADATA_KEY: json.dumps({"name": model.config_name, **model.config})}


def checkpoint_file(path: Path) -> Path:
    """The safetensors file of a run dir (its latest checkpoint) or of a file path."""
    return run_checkpoint(path) if checkpoint_format(path) == "run" else path


def load_mae(path: str | os.PathLike, weights: str = "ema", map_location: Any = "cpu") -> MAE:
    """Load an MAE (in eval mode) from a run dir trained with objective "mae" or one of its checkpoints."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    file = checkpoint_file(path)
    tensors, metadata = safetensors_load(file, map_location)
    if MAE_METADATA_KEY not in metadata:
        raise CheckpointError(f"{file}: no {MAE_METADATA_KEY!r} metadata; not an MAE checkpoint")
    try:
        config = json.loads(metadata[MAE_METADATA_KEY])
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{file}: metadata {MAE_METADATA_KEY!r} is not valid JSON ({e.msg})") from None
    return build_from_state(config, select_weights(tensors, weights), file, MAE)


def is_mae_checkpoint(path: str | os.PathLike) -> bool:
    """Whether `path` (a run dir or a .safetensors file) holds an MAE rather than a DiT."""
    path = Path(path)
    if not path.exists() or checkpoint_format(path) not in ("run", "safetensors"):
        return False
    file = checkpoint_file(path)
    try:
        with safe_open(file, framework="pt") as f:
            return MAE_METADATA_KEY in (f.metadata() or {})
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{file}: not a readable safetensors file ({e})") from None


def load_model(path: str | os.PathLike, weights: str = "ema", map_location: Any = "cpu") -> DiT | MAE:
    """`load_mae` for an MAE checkpoint, `load_dit` for everything else."""
    loader = load_mae if is_mae_checkpoint(path) else load_dit
    return loader(path, weights=weights, map_location=map_location)
