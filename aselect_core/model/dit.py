"""The DiT architecture (Peebles & Xie, 2023) with the reference state-dict key names, plus feature taps.

Matches facebookresearch/DiT `models.py` layer for layer (adaLN-Zero blocks, fixed 2-D sin-cos `pos_embed`,
label table with a null-class row, reference init), re-implemented without timm, so official checkpoints load
unchanged. Two constructor switches with reference defaults exist only so that diffusers `DiTTransformer2DModel`
weights reproduce diffusers' outputs: `time_freq_shift` (diffusers' `downscale_freq_shift=1`) and `mlp_norm_eps`
(diffusers' `norm_eps`, 1e-5 by default, on the LayerNorm before the MLP).

`forward_features` returns token features (B, N, D) from inside the network for the analysis package.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aselect_core.model.layer_key import BLOCK_KINDS, LayerKey

FEATURE_KINDS = ("embed", *BLOCK_KINDS)  # the kinds `DiT.forward_features` accepts


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN: x (B, N, D) scaled and shifted per sample by shift, scale (B, D), in one fused multiply-add pass."""
    return torch.addcmul(shift.unsqueeze(1), x, 1 + scale.unsqueeze(1))  # (B, N, D)


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0, freq_shift: float = 0.0) -> Tensor:
    """Sinusoidal embedding [cos, sin] of (possibly fractional) timesteps t (B,) -> (B, dim).

    Frequencies are max_period ** (-i / (dim/2 - freq_shift)); the reference (GLIDE) uses freq_shift 0.
    """
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device)  # (half,)
    freqs = torch.exp(exponent / (half - freq_shift))  # (half,)
    args = t[:, None].float() * freqs[None]  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (B, 2*half)
    return F.pad(emb, (0, dim % 2))  # (B, dim)


def sincos_1d(dim: int, pos: Tensor) -> Tensor:
    """MAE 1-D sin-cos embedding [sin, cos] of positions pos (M,) -> (M, dim), in float64."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))  # (dim/2,)
    out = torch.outer(pos.double(), omega)  # (M, dim/2)
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)  # (M, dim)


def sincos_pos_embed_2d(dim: int, grid_size: int) -> Tensor:
    """Fixed 2-D sin-cos position embedding (G*G, dim) float32 for a G x G patch grid in row-major order.

    As in MAE/DiT: the first dim/2 channels encode the column (x), the last dim/2 the row (y).
    """
    if dim % 4:
        raise ValueError(f"sincos_pos_embed_2d: dim must be divisible by 4, got {dim}")
    coords = torch.arange(grid_size, dtype=torch.float64)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")  # (G, G) each; patch n = r * G + c
    return torch.cat([sincos_1d(dim // 2, cols.flatten()), sincos_1d(dim // 2, rows.flatten())], dim=1).float()


class PatchEmbed(nn.Module):
    """Non-overlapping p x p patches -> tokens: (B, C, H, W) -> (B, N, D), N = (H/p)(W/p) row-major (timm keys)."""

    def __init__(self, img_size: int, patch_size: int, in_channels: int, embed_dim: int):
        super().__init__()
        self.img_size, self.patch_size = img_size, patch_size
        self.grid_size = img_size // patch_size
        self.num_patches = self.grid_size ** 2
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-2:] != (self.img_size, self.img_size):
            raise ValueError(f"DiT input: expected (B, C, {self.img_size}, {self.img_size}), got {tuple(x.shape)}")
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, N, D)


class TimestepEmbedder(nn.Module):
    """Timestep t (B,) -> (B, D): a 256-d sinusoidal embedding through Linear-SiLU-Linear."""

    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256, freq_shift: float = 0.0):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(frequency_embedding_size, hidden_size), nn.SiLU(),
                                 nn.Linear(hidden_size, hidden_size))
        self.frequency_embedding_size = frequency_embedding_size
        self.freq_shift = freq_shift

    def forward(self, t: Tensor) -> Tensor:
        return self.mlp(timestep_embedding(t, self.frequency_embedding_size, freq_shift=self.freq_shift))  # (B, D)


class LabelEmbedder(nn.Module):
    """Class label (B,) -> (B, D). With dropout_prob > 0 the table has a null-class row (index num_classes),
    used for label dropout in training (classifier-free guidance) and for unconditional features."""

    def __init__(self, num_classes: int, hidden_size: int, dropout_prob: float):
        super().__init__()
        self.embedding_table = nn.Embedding(num_classes + int(dropout_prob > 0), hidden_size)
        self.num_classes = num_classes
        self.dropout_prob = dropout_prob

    @property
    def has_null(self) -> bool:
        return self.embedding_table.num_embeddings > self.num_classes

    def token_drop(self, labels: Tensor, force_drop_ids: Tensor | None = None) -> Tensor:
        """Replace labels by the null class: at random with dropout_prob, or where force_drop_ids == 1."""
        if force_drop_ids is None:
            drop = torch.rand(labels.shape[0], device=labels.device) < self.dropout_prob  # (B,)
        else:
            drop = force_drop_ids == 1
        return torch.where(drop, self.num_classes, labels)

    def forward(self, labels: Tensor, train: bool, force_drop_ids: Tensor | None = None) -> Tensor:
        if (train and self.dropout_prob > 0) or force_drop_ids is not None:
            labels = self.token_drop(labels, force_drop_ids)
        return self.embedding_table(labels)  # (B, D)


class Attention(nn.Module):
    """Multi-head self-attention via scaled_dot_product_attention (timm keys `qkv`, `proj`)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"DiT: hidden_size {dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        B, N, D = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, D // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B, H, N, D/H) each
        out = F.scaled_dot_product_attention(q, k, v)  # (B, H, N, D/H)
        return self.proj(out.transpose(1, 2).reshape(B, N, D))  # (B, N, D)


class Mlp(nn.Module):
    """fc1 -> GELU(tanh) -> fc2 (timm keys `fc1`, `fc2`)."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class DiTBlock(nn.Module):
    """Transformer block with adaLN-Zero conditioning on c (B, D)."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0, mlp_norm_eps: float = 1e-6):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=mlp_norm_eps)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))

    def forward_parts(self, x: Tensor, c: Tensor, branches: bool = True
                      ) -> tuple[Tensor | None, Tensor | None, Tensor]:
        """(gated attention branch, gated MLP branch, output residual stream), each (B, N, D).

        output = x + attn_branch + mlp_branch, where mlp_branch is computed from x + attn_branch. The stream is
        updated by a fused x + gate * branch; the gated branches cost a multiply each, so are None unless
        `branches` (up to rounding, the stream equals the sum of the returned parts).
        """
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        attn_out = self.attn(modulate(self.norm1(x), shift_msa, scale_msa))  # (B, N, D), before the gate
        x = torch.addcmul(x, gate_msa.unsqueeze(1), attn_out)  # (B, N, D)
        mlp_out = self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))  # (B, N, D), before the gate
        out = torch.addcmul(x, gate_mlp.unsqueeze(1), mlp_out)  # (B, N, D)
        if not branches:
            return None, None, out
        return gate_msa.unsqueeze(1) * attn_out, gate_mlp.unsqueeze(1) * mlp_out, out

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        return self.forward_parts(x, c, branches=False)[2]


class FinalLayer(nn.Module):
    """adaLN-modulated LayerNorm then a linear map of each token to its p*p*C_out patch values."""

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)  # (B, D) each
        return self.linear(modulate(self.norm_final(x), shift, scale))  # (B, N, p*p*C_out)


def resolve_layers(layers: Iterable[int] | None, depth: int, owner: str) -> list[int]:
    """Block indices, 0-based, negatives counted from the end; None = all blocks. Sorted, distinct."""
    if layers is None:
        return list(range(depth))
    out = set()
    for i in layers:
        if not -depth <= int(i) < depth:
            raise ValueError(f"{owner}: layer {i} out of range for depth {depth}")
        out.add(int(i) % depth)
    return sorted(out)


def init_linears_xavier(model: nn.Module, patch_conv: nn.Conv2d) -> None:
    """Xavier-uniform weights and zero biases for every Linear, and the patch conv initialised like a Linear
    (the DiT and MAE reference inits share this start)."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
    w = patch_conv.weight.data  # (D, C, p, p) viewed as (D, C·p·p)
    nn.init.xavier_uniform_(w.view(w.shape[0], -1))


class DiT(nn.Module):
    """Diffusion transformer on (B, C, H, W) inputs; predicts noise (and the variance when learn_sigma).

    `config` holds the constructor arguments; `config_name` the `DIT_CONFIGS` name when built from it.
    """

    def __init__(self, input_size: int = 32, patch_size: int = 2, in_channels: int = 4, hidden_size: int = 1152,
                 depth: int = 28, num_heads: int = 16, mlp_ratio: float = 4.0, class_dropout_prob: float = 0.1,
                 num_classes: int = 1000, learn_sigma: bool = True, time_freq_shift: float = 0.0,
                 mlp_norm_eps: float = 1e-6):
        super().__init__()
        if input_size % patch_size:
            raise ValueError(f"DiT: input_size {input_size} must be divisible by patch_size {patch_size}")
        self.config: dict[str, Any] = dict(
            input_size=input_size, patch_size=patch_size, in_channels=in_channels, hidden_size=hidden_size,
            depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio, class_dropout_prob=class_dropout_prob,
            num_classes=num_classes, learn_sigma=learn_sigma, time_freq_shift=time_freq_shift,
            mlp_norm_eps=mlp_norm_eps)
        self.config_name: str | None = None
        self.learn_sigma = learn_sigma
        self.in_channels = in_channels
        self.out_channels = in_channels * 2 if learn_sigma else in_channels
        self.patch_size = patch_size
        self.num_heads = num_heads

        self.x_embedder = PatchEmbed(input_size, patch_size, in_channels, hidden_size)
        self.t_embedder = TimestepEmbedder(hidden_size, freq_shift=time_freq_shift)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size, class_dropout_prob)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.x_embedder.num_patches, hidden_size), requires_grad=False)
        self.blocks = nn.ModuleList(
            DiTBlock(hidden_size, num_heads, mlp_ratio, mlp_norm_eps) for _ in range(depth))
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """The reference init: xavier linears, sin-cos pos_embed, N(0, 0.02) label table and t-MLP, adaLN-Zero."""
        init_linears_xavier(self, self.x_embedder.proj)
        pos = sincos_pos_embed_2d(self.pos_embed.shape[-1], self.x_embedder.grid_size)  # (N, D)
        self.pos_embed.data.copy_(pos.unsqueeze(0).to(self.pos_embed.device))
        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for layer in [b.adaLN_modulation[-1] for b in self.blocks] + [self.final_layer.adaLN_modulation[-1],
                                                                        self.final_layer.linear]:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    @property
    def depth(self) -> int:
        return len(self.blocks)

    def unpatchify(self, x: Tensor) -> Tensor:
        """(B, N, p*p*C_out) tokens -> (B, C_out, H, W) image."""
        c, p, g = self.out_channels, self.patch_size, self.x_embedder.grid_size
        x = x.reshape(x.shape[0], g, g, p, p, c)
        x = torch.einsum("nhwpqc->nchpwq", x)  # (B, C_out, g, p, g, p)
        return x.reshape(x.shape[0], c, g * p, g * p)

    def null_labels(self, batch_size: int, device: torch.device) -> Tensor:
        """(B,) of the null class; errors when the label table has no null row."""
        if not self.y_embedder.has_null:
            raise ValueError("DiT: y=None needs the null-class row, but this model has class_dropout_prob=0")
        return torch.full((batch_size,), self.y_embedder.num_classes, dtype=torch.long, device=device)

    def embed(self, x: Tensor, t: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor]:
        """Input tokens (B, N, D) (patch embed + pos_embed) and conditioning c = t_emb + y_emb (B, D)."""
        y = self.null_labels(x.shape[0], x.device) if y is None else y
        h = self.x_embedder(x) + self.pos_embed  # (B, N, D)
        c = self.t_embedder(t) + self.y_embedder(y, self.training)  # (B, D)
        return h, c

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        """x (B, C, H, W), t (B,) timesteps, y (B,) labels or None for the null class -> (B, C_out, H, W)."""
        h, c = self.embed(x, t, y)
        for block in self.blocks:
            h = block(h, c)  # (B, N, D)
        return self.unpatchify(self.final_layer(h, c))

    def forward_with_cfg(self, x: Tensor, t: Tensor, y: Tensor, cfg_scale: float) -> Tensor:
        """Classifier-free guidance as in the reference: the batch is [cond half; uncond half] (y of the second half
        the null class); the guided eps replaces both halves, the learned-sigma channels pass through."""
        half = x[: len(x) // 2]
        out = self.forward(torch.cat([half, half], dim=0), t, y)  # (B, C_out, H, W)
        eps, rest = out[:, :self.in_channels], out[:, self.in_channels:]
        cond_eps, uncond_eps = torch.split(eps, len(eps) // 2, dim=0)
        half_eps = uncond_eps + cfg_scale * (cond_eps - uncond_eps)
        return torch.cat([torch.cat([half_eps, half_eps], dim=0), rest], dim=1)

    def resolve_layers(self, layers: Iterable[int] | None) -> list[int]:
        return resolve_layers(layers, self.depth, "DiT.forward_features")

    def forward_features(self, x: Tensor, t: Tensor, y: Tensor | None = None, layers: Iterable[int] | None = None,
                         kinds: Sequence[str] = ("block",)) -> dict[str, Tensor]:
        """Token features (B, N, D) from inside the network, N patches in row-major order.

        Keys, for each requested block index i (0-based; `layers=None` = all, negatives from the end):
          "block.i"      residual stream after block i (the input of block i+1; "block.{depth-1}" is what
                         `final_layer` reads),
          "block.i.attn" attention branch of block i after its adaLN gate, gate_msa * attn(modulate(norm1(h))),
                         i.e. exactly what is added to the residual stream, before the add,
          "block.i.mlp"  likewise the gated MLP branch, so block.i = block.{i-1} + block.i.attn + block.i.mlp;
        and for kind "embed" the key "embed": patch embedding + pos_embed, the input of block 0.
        Kinds are among `FEATURE_KINDS` ("embed", "block", "attn", "mlp"). `y=None` is the null class. Blocks past
        the deepest requested layer are not run; the computation is the one `forward` does.
        """
        unknown = set(kinds) - set(FEATURE_KINDS)
        if unknown:
            raise ValueError(f"DiT.forward_features: unknown kinds {sorted(unknown)}; expected some of {FEATURE_KINDS}")
        block_kinds = [k for k in FEATURE_KINDS[1:] if k in kinds]
        wanted = set(self.resolve_layers(layers)) if block_kinds else set()
        h, c = self.embed(x, t, y)
        feats = {"embed": h} if "embed" in kinds else {}
        branches = bool({"attn", "mlp"} & set(block_kinds))
        for i in range(max(wanted, default=-1) + 1):
            attn, mlp, h = self.blocks[i].forward_parts(h, c, branches and i in wanted)
            if i in wanted:
                parts = {"block": h, "attn": attn, "mlp": mlp}
                feats.update({str(LayerKey.block(i, kind)): parts[kind] for kind in block_kinds})
        return feats


# name -> (depth, hidden_size, num_heads): the paper's S/B/L/XL plus two sizes for CPU work: "T" (tiny, 4.2M
# parameters) and "N" (nano, 1.9M: the shipped demo runs, whose half-precision EMA weights fit 4 MB a run).
DIT_SIZES = {"XL": (28, 1152, 16), "L": (24, 1024, 16), "B": (12, 768, 12), "S": (12, 384, 6), "T": (6, 192, 3),
             "N": (6, 128, 2)}


def _config(name: str, depth: int, hidden_size: int, num_heads: int, patch_size: int) -> Callable[..., DiT]:
    def build(**kwargs: Any) -> DiT:
        model = DiT(depth=depth, hidden_size=hidden_size, num_heads=num_heads, patch_size=patch_size, **kwargs)
        model.config_name = name
        return model
    build.__doc__ = f"{name}: depth {depth}, hidden {hidden_size}, {num_heads} heads, patch {patch_size}."
    return build


DIT_CONFIGS: dict[str, Callable[..., DiT]] = {
    f"DiT-{size}/{p}": _config(f"DiT-{size}/{p}", *DIT_SIZES[size], p) for size in DIT_SIZES for p in (2, 4, 8)}


def build_dit(name: str, **kwargs: Any) -> DiT:
    """`DIT_CONFIGS[name](**kwargs)`, with a one-line error listing the known names for an unknown one."""
    if name not in DIT_CONFIGS:
        raise ValueError(f"unknown DiT config {name!r}; expected one of {', '.join(DIT_CONFIGS)}")
    return DIT_CONFIGS[name](**kwargs)


def dit_depth(name: str) -> int:
    """The number of blocks of `DIT_CONFIGS[name]` ("DiT-T/4" -> 6), without building it; ValueError as build_dit."""
    if name not in DIT_CONFIGS:
        raise ValueError(f"unknown DiT config {name!r}; expected one of {', '.join(DIT_CONFIGS)}")
    return DIT_SIZES[name.split("-")[1].split("/")[0]][0]
