"""Mutual-information estimators (`estimate_mi`) and the I-MMSE curve I(x0; x_t) of a denoiser (`mi_x0_xt`)."""
from analysis.mi.base import MIEstimate
from analysis.mi.estimate import METHODS, MI_COLUMNS, estimate_mi, estimate_mi_detailed, half_sample_se, label_mi_grid
from analysis.mi.immse import IMMSE_COLUMNS, mi_x0_xt

__all__ = ["IMMSE_COLUMNS", "METHODS", "MIEstimate", "MI_COLUMNS", "estimate_mi", "estimate_mi_detailed",
           "half_sample_se", "label_mi_grid", "mi_x0_xt"]
