"""An independent DiT in the official key set, for side-by-side speed measurements (bench/train_throughput.py).

Written here from the DiT paper's description and the released checkpoints' state-dict layout (x_embedder.proj,
t_embedder.mlp.{0,2}, y_embedder.embedding_table, pos_embed, blocks.i.{attn.qkv, attn.proj, mlp.fc1, mlp.fc2,
adaLN_modulation.1}, final_layer.{linear, adaLN_modulation.1}), in the style of the reference code: timm-like
attention with an explicit softmax(q kᵀ / √d) v, separate modules per part, no feature taps. It shares no code with
`aselect_core.model`, so equal outputs on the same weights check both, and the speed ratio says what the
project's implementation choices buy.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def _modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]  # (B, N, D)


class RefAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        B, N, D = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)  # (B, H, N, d)
        attn = (q @ k.transpose(-2, -1) * self.scale).softmax(dim=-1)  # (B, H, N, N)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, D))


class RefMlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class RefBlock(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = RefAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = RefMlp(dim, 4 * dim)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        s1, g1, a1, s2, g2, a2 = self.adaLN_modulation(c).chunk(6, dim=1)  # shift, scale, gate per branch
        x = x + a1[:, None] * self.attn(_modulate(self.norm1(x), s1, g1))
        return x + a2[:, None] * self.mlp(_modulate(self.norm2(x), s2, g2))


class RefPatchEmbed(nn.Module):
    def __init__(self, patch: int, channels: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(channels, dim, patch, stride=patch)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, N, D)


class RefTimestepEmbedder(nn.Module):
    def __init__(self, dim: int, freq: int = 256):
        super().__init__()
        self.freq = freq
        self.mlp = nn.Sequential(nn.Linear(freq, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: Tensor) -> Tensor:
        half = self.freq // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = t[:, None].float() * freqs[None]  # (B, half)
        return self.mlp(torch.cat([args.cos(), args.sin()], dim=-1))


class RefLabelEmbedder(nn.Module):
    def __init__(self, classes: int, dim: int):
        super().__init__()
        self.embedding_table = nn.Embedding(classes + 1, dim)  # the last row is the null class

    def forward(self, y: Tensor) -> Tensor:
        return self.embedding_table(y)


class RefFinalLayer(nn.Module):
    def __init__(self, dim: int, patch: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(dim, patch * patch * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(_modulate(self.norm_final(x), shift, scale))


class ReferenceDiT(nn.Module):
    """DiT(x, t, y) -> (B, out_channels, H, W), loadable from any official-format state dict of the same shape."""

    def __init__(self, input_size: int, patch_size: int, in_channels: int, hidden_size: int, depth: int,
                 num_heads: int, num_classes: int, learn_sigma: bool = True):
        super().__init__()
        self.patch, self.out_channels = patch_size, in_channels * (2 if learn_sigma else 1)
        self.x_embedder = RefPatchEmbed(patch_size, in_channels, hidden_size)
        self.t_embedder = RefTimestepEmbedder(hidden_size)
        self.y_embedder = RefLabelEmbedder(num_classes, hidden_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, (input_size // patch_size) ** 2, hidden_size),
                                      requires_grad=False)
        self.blocks = nn.ModuleList(RefBlock(hidden_size, num_heads) for _ in range(depth))
        self.final_layer = RefFinalLayer(hidden_size, patch_size, self.out_channels)

    def _trunk(self, x: Tensor, t: Tensor, y: Tensor, depth: int) -> tuple[Tensor, Tensor]:
        h, c = self.x_embedder(x) + self.pos_embed, self.t_embedder(t) + self.y_embedder(y)  # (B, N, D), (B, D)
        for block in self.blocks[:depth]:
            h = block(h, c)
        return h, c

    def features(self, x: Tensor, t: Tensor, y: Tensor, depth: int) -> Tensor:
        """The residual stream after block `depth - 1` (B, N, D): what a feature extraction taps."""
        return self._trunk(x, t, y, depth)[0]

    def forward(self, x: Tensor, t: Tensor, y: Tensor) -> Tensor:
        h, c = self._trunk(x, t, y, len(self.blocks))
        h = self.final_layer(h, c)  # (B, N, p·p·C_out)
        B, N, _ = h.shape
        g, p = int(math.isqrt(N)), self.patch
        h = h.reshape(B, g, g, p, p, self.out_channels).permute(0, 5, 1, 3, 2, 4)  # (B, C, g, p, g, p)
        return h.reshape(B, self.out_channels, g * p, g * p)
