"""The name of a tapped feature: `LayerKey` ("block.3", "block.3.attn", "block.3.mlp", or a non-block row such as
"embed" and the probe grid's "pixels"), as `DiT.forward_features` keys its output and every table stores it.

Everything that names, parses, orders or resolves a layer goes through here, so the format lives in one place:
`str(LayerKey.block(3, "attn")) == "block.3.attn"`, `LayerKey.parse("block.3").index == 3`,
`sorted(keys, key=layer_order)` puts "embed" first and each block's kinds in `BLOCK_KINDS` order, and
`resolve_block("block.-1", depth)` maps 3, -1 or "block.3" to an index in [0, depth).
"""
from __future__ import annotations

from dataclasses import dataclass

BLOCK_KINDS = ("block", "attn", "mlp")  # a block's residual stream, then its two gated branches
NO_BLOCK = -1  # LayerKey.index of a row that is not a block ("embed", "pixels")


@dataclass(frozen=True)
class LayerKey:
    """A feature's block index (NO_BLOCK for a non-block row) and kind ("block", "attn", "mlp", or the row's name)."""

    index: int
    kind: str = "block"

    @classmethod
    def block(cls, index: int, kind: str = "block") -> LayerKey:
        if kind not in BLOCK_KINDS:
            raise ValueError(f"kind: expected one of {BLOCK_KINDS}, got {kind!r}")
        return cls(int(index), kind)

    @classmethod
    def parse(cls, key: str | LayerKey) -> LayerKey:
        """'block.3' -> (3, 'block'); 'block.3.attn' -> (3, 'attn'); any other name -> (NO_BLOCK, name)."""
        if isinstance(key, LayerKey):
            return key
        parts = str(key).split(".")
        if len(parts) in (2, 3) and parts[0] == "block" and parts[1].isdigit():
            return cls.block(int(parts[1]), parts[2] if len(parts) == 3 else "block")
        return cls(NO_BLOCK, str(key))

    @property
    def is_block(self) -> bool:
        return self.kind in BLOCK_KINDS and self.index != NO_BLOCK

    def __str__(self) -> str:
        if not self.is_block:
            return self.kind
        return f"block.{self.index}" if self.kind == "block" else f"block.{self.index}.{self.kind}"


def layer_order(key: str | LayerKey) -> tuple[int, int, str]:
    """Sort key: non-block rows first (by name), then blocks by index, each block's kinds in BLOCK_KINDS order."""
    k = LayerKey.parse(key)
    return (k.index, BLOCK_KINDS.index(k.kind), "") if k.is_block else (NO_BLOCK, -1, k.kind)


def resolve_block(layer: int | str | LayerKey, depth: int) -> int:
    """3, -1, "block.3" or "block.-1" -> a block index in [0, depth); a one-line ValueError otherwise."""
    text = str(layer)
    index = text.removeprefix("block.")
    if not index.lstrip("-").isdigit() or not -depth <= int(index) < depth:
        raise ValueError(f"layer: expected a block index in [-{depth}, {depth}) or 'block.i', got {layer!r}")
    return int(index) % depth
