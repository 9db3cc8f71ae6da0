"""The DiT model: architecture and configs (`dit`), checkpoint loading and saving (`load`)."""
from aselect_core.model.dit import (DIT_CONFIGS, DIT_SIZES, FEATURE_KINDS, DiT, DiTBlock, build_dit, feature_key,
                                    sincos_pos_embed_2d, timestep_embedding)

__all__ = ["DIT_CONFIGS", "DIT_SIZES", "FEATURE_KINDS", "DiT", "DiTBlock", "build_dit", "feature_key",
           "sincos_pos_embed_2d", "timestep_embedding"]
