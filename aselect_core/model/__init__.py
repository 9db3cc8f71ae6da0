"""The models: DiT architecture and configs (`dit`), the MAE baseline (`mae`), checkpoint loading and saving (`load`)."""
from aselect_core.model.dit import (DIT_CONFIGS, DIT_SIZES, FEATURE_KINDS, DiT, DiTBlock, build_dit, feature_key,
                                    sincos_pos_embed_2d, timestep_embedding)
from aselect_core.model.load import (CheckpointError, infer_config, is_mae_checkpoint, load_dit, load_mae, load_model,
                                     mae_metadata, save_dit)
from aselect_core.model.mae import MAE, build_mae, random_masking

__all__ = ["DIT_CONFIGS", "DIT_SIZES", "FEATURE_KINDS", "MAE", "CheckpointError", "DiT", "DiTBlock", "build_dit",
           "build_mae", "feature_key", "infer_config", "is_mae_checkpoint", "load_dit", "load_mae", "load_model",
           "mae_metadata", "random_masking", "save_dit", "sincos_pos_embed_2d", "timestep_embedding"]
