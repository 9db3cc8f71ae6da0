"""A masked autoencoder (He et al., 2022) of a DiT's shape: the "Standard ViT (MAE)" baseline of the seed's table.

The encoder has the DiT's patch size, width, depth, heads and MLP ratio, the same fixed 2-D sin-cos `pos_embed`
and the same attention/MLP modules, but plain pre-LN ViT blocks (x + attn(LN(x)), x + mlp(LN(x))) instead of
adaLN-Zero, no timestep or label input and no class token (probes mean-pool patch tokens, as for the DiT).
Training (`forward`): shuffle the N patch tokens per image, keep the first (1 - mask_ratio)·N (MAE's 0.75 masks
three in four), encode only those, then a light decoder — `decoder_depth` (default 2) blocks of width
`decoder_hidden` (default hidden // 2) with `num_heads` heads, its own fixed sin-cos position table and a
learned mask token — predicts every patch's pixels; the loss is their mean squared error on the masked patches
only (plain pixel targets; MAE's per-patch normalisation is left out: many MNIST patches are constant).
The MAE paper's decoder is 512-d and 8 deep for a 1024-d, 24-deep ViT-L; this one is as light relative to the
small encoders here. Features (`forward_features`) are read on the FULL unmasked image, keyed "block.i" like
the DiT's, so the analysis package probes both the same way.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import torch
from torch import Tensor, nn

from aselect_core.model.dit import (DIT_CONFIGS, Attention, Mlp, PatchEmbed, init_linears_xavier, resolve_layers,
                                    sincos_pos_embed_2d)
from aselect_core.model.layer_key import LayerKey

MAE_FEATURE_KINDS = ("embed", "block")  # the kinds `MAE.forward_features` accepts


class ViTBlock(nn.Module):
    """Pre-LN transformer block: x + attn(LN(x)), then + mlp(LN(x)); (B, N, D) -> (B, N, D)."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads)
        self.norm2 = nn.LayerNorm(hidden_size, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def random_masking(tokens: Tensor, mask_ratio: float) -> tuple[Tensor, Tensor, Tensor]:
    """Keep a random (1 - mask_ratio) share of each image's tokens (B, N, D), drawn from the global torch RNG.

    Returns kept tokens (B, K, D) with K = round((1 - mask_ratio) N) (at least 1), the mask (B, N) (1 = masked,
    in the original patch order) and ids_restore (B, N), which undoes the shuffle.
    """
    B, N, D = tokens.shape
    keep = max(1, round(N * (1 - mask_ratio)))
    ids_shuffle = torch.rand(B, N, device=tokens.device).argsort(dim=1)  # (B, N) random order per image
    ids_restore = ids_shuffle.argsort(dim=1)  # (B, N)
    kept = tokens.gather(1, ids_shuffle[:, :keep, None].expand(-1, -1, D))  # (B, K, D)
    mask = torch.ones(B, N, device=tokens.device)
    mask[:, :keep] = 0
    return kept, mask.gather(1, ids_restore), ids_restore


class MAE(nn.Module):
    """ViT encoder + light decoder trained to reconstruct masked patches; `config` holds the constructor args."""

    def __init__(self, input_size: int = 32, patch_size: int = 4, in_channels: int = 1, hidden_size: int = 192,
                 depth: int = 6, num_heads: int = 3, mlp_ratio: float = 4.0, mask_ratio: float = 0.75,
                 decoder_hidden: int | None = None, decoder_depth: int = 2):
        super().__init__()
        if input_size % patch_size:
            raise ValueError(f"MAE: input_size {input_size} must be divisible by patch_size {patch_size}")
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"MAE: mask_ratio expected a float in [0, 1), got {mask_ratio!r}")
        decoder_hidden = decoder_hidden or hidden_size // 2
        self.config: dict[str, Any] = dict(
            input_size=input_size, patch_size=patch_size, in_channels=in_channels, hidden_size=hidden_size,
            depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio, mask_ratio=mask_ratio,
            decoder_hidden=decoder_hidden, decoder_depth=decoder_depth)
        self.config_name: str | None = None
        self.patch_size, self.in_channels, self.mask_ratio = patch_size, in_channels, mask_ratio
        self.x_embedder = PatchEmbed(input_size, patch_size, in_channels, hidden_size)
        grid, n = self.x_embedder.grid_size, self.x_embedder.num_patches
        self.pos_embed = nn.Parameter(sincos_pos_embed_2d(hidden_size, grid).unsqueeze(0), requires_grad=False)
        self.blocks = nn.ModuleList(ViTBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(hidden_size, eps=1e-6)
        self.decoder_embed = nn.Linear(hidden_size, decoder_hidden)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_hidden))
        self.decoder_pos_embed = nn.Parameter(sincos_pos_embed_2d(decoder_hidden, grid).unsqueeze(0),
                                              requires_grad=False)
        self.decoder_blocks = nn.ModuleList(ViTBlock(decoder_hidden, num_heads, mlp_ratio)
                                            for _ in range(decoder_depth))
        self.decoder_norm = nn.LayerNorm(decoder_hidden, eps=1e-6)
        self.decoder_pred = nn.Linear(decoder_hidden, patch_size * patch_size * in_channels)
        self.num_patches = n
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """MAE's init: xavier linears (and patch conv), zero biases, LayerNorm (1, 0), N(0, 0.02) mask token."""
        init_linears_xavier(self, self.x_embedder.proj)
        for module in self.modules():
            if isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.mask_token, std=0.02)

    @property
    def depth(self) -> int:
        return len(self.blocks)

    def patchify(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, N, p*p*C) pixel targets, patches row-major, pixels (p, q, c) like the decoder's."""
        B, C, H, W = x.shape
        p = self.patch_size
        x = x.reshape(B, C, H // p, p, W // p, p)
        return torch.einsum("nchpwq->nhwpqc", x).reshape(B, (H // p) * (W // p), p * p * C)

    def encode_masked(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Encoder on the visible tokens: latent (B, K, D) after the final norm, mask (B, N), ids_restore (B, N)."""
        h = self.x_embedder(x) + self.pos_embed  # (B, N, D)
        h, mask, ids_restore = random_masking(h, self.mask_ratio)  # (B, K, D)
        for block in self.blocks:
            h = block(h)
        return self.norm(h), mask, ids_restore

    def decode(self, latent: Tensor, ids_restore: Tensor) -> Tensor:
        """Visible latents (B, K, D) -> pixel predictions of every patch (B, N, p*p*C)."""
        h = self.decoder_embed(latent)  # (B, K, Dd)
        B, K, Dd = h.shape
        fill = self.mask_token.expand(B, ids_restore.shape[1] - K, Dd)  # (B, N-K, Dd)
        h = torch.cat([h, fill], dim=1).gather(1, ids_restore[..., None].expand(-1, -1, Dd))  # (B, N, Dd) unshuffled
        h = h + self.decoder_pos_embed
        for block in self.decoder_blocks:
            h = block(h)
        return self.decoder_pred(self.decoder_norm(h))  # (B, N, p*p*C)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x (B, C, H, W) -> per-image loss (B,) (MSE over masked patches), predictions (B, N, p*p*C), mask (B, N)."""
        latent, mask, ids_restore = self.encode_masked(x)
        pred = self.decode(latent, ids_restore)
        per_patch = (pred - self.patchify(x)).pow(2).mean(dim=-1)  # (B, N)
        loss = (per_patch * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)  # (B,); mask_ratio 0: no masked patch
        return loss, pred, mask

    def resolve_layers(self, layers: Iterable[int] | None) -> list[int]:
        return resolve_layers(layers, self.depth, "MAE.forward_features")

    def forward_features(self, x: Tensor, layers: Iterable[int] | None = None,
                         kinds: Sequence[str] = ("block",)) -> dict[str, Tensor]:
        """Token features (B, N, D) of the FULL unmasked image: "block.i" = residual stream after encoder block i
        (before the final norm, as the DiT's), "embed" = patch embedding + pos_embed. Blocks past the deepest
        requested one are not run."""
        unknown = set(kinds) - set(MAE_FEATURE_KINDS)
        if unknown:
            raise ValueError(f"MAE.forward_features: unknown kinds {sorted(unknown)}; expected some of "
                             f"{MAE_FEATURE_KINDS}")
        wanted = set(self.resolve_layers(layers)) if "block" in kinds else set()
        h = self.x_embedder(x) + self.pos_embed  # (B, N, D)
        feats = {"embed": h} if "embed" in kinds else {}
        for i in range(max(wanted, default=-1) + 1):
            h = self.blocks[i](h)
            if i in wanted:
                feats[str(LayerKey.block(i))] = h
        return feats


def build_mae(dit_name: str, **kwargs: Any) -> MAE:
    """The MAE with the encoder shape (patch, hidden, depth, heads, MLP ratio) of `DIT_CONFIGS[dit_name]`."""
    if dit_name not in DIT_CONFIGS:
        raise ValueError(f"unknown DiT config {dit_name!r}; expected one of {', '.join(DIT_CONFIGS)}")
    with torch.device("meta"):
        shape = DIT_CONFIGS[dit_name]().config
    model = MAE(patch_size=shape["patch_size"], hidden_size=shape["hidden_size"], depth=shape["depth"],
                num_heads=shape["num_heads"], mlp_ratio=shape["mlp_ratio"], **kwargs)
    model.config_name = f"MAE-{dit_name.removeprefix('DiT-')}"
    return model
