"""The models: DiT architecture and configs (`dit`), the names of its tapped features (`layer_key`), the MAE baseline
(`mae`), checkpoint loading and saving (`load`), optional torch.compile of the blocks (`compile`)."""
from aselect_core.io import CheckpointError
from aselect_core.model.compile import compile_blocks
from aselect_core.model.dit import (DIT_CONFIGS, DIT_SIZES, FEATURE_KINDS, DiT, DiTBlock, build_dit, dit_depth,
                                    sincos_pos_embed_2d, timestep_embedding)
from aselect_core.model.layer_key import LayerKey, layer_order, resolve_block
from aselect_core.model.load import (infer_config, is_mae_checkpoint, load_dit, load_mae, load_model,
                                     mae_metadata, save_dit)
from aselect_core.model.mae import MAE, build_mae, random_masking

__all__ = ["DIT_CONFIGS", "DIT_SIZES", "FEATURE_KINDS", "MAE", "CheckpointError", "DiT", "DiTBlock", "LayerKey",
           "build_dit", "build_mae", "compile_blocks", "dit_depth", "infer_config", "is_mae_checkpoint", "layer_order",
           "load_dit", "load_mae", "load_model", "mae_metadata", "random_masking", "resolve_block", "save_dit",
           "sincos_pos_embed_2d", "timestep_embedding"]
