"""The DiT model: architecture and configs (`dit`), checkpoint loading and saving (`load`)."""
from aselect_core.model.dit import (DIT_CONFIGS, DIT_SIZES, FEATURE_KINDS, DiT, DiTBlock, build_dit, feature_key,
                                    sincos_pos_embed_2d, timestep_embedding)
from aselect_core.model.load import CheckpointError, infer_config, load_dit, save_dit

__all__ = ["DIT_CONFIGS", "DIT_SIZES", "FEATURE_KINDS", "CheckpointError", "DiT", "DiTBlock", "build_dit",
           "feature_key", "infer_config", "load_dit", "save_dit", "sincos_pos_embed_2d", "timestep_embedding"]
