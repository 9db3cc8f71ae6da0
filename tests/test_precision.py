"""Precision of the hot loops: one setting (auto | fp32 | bf16), validated, and bf16 features close to float32."""
from __future__ import annotations

import pytest
import torch

from analysis.features import extract_features
from aselect_core.model import build_dit
from aselect_core.precision import autocast_dtype, check_precision
from aselect_core.train import TrainConfig
from aselect_core.train.config import ConfigError


def test_auto_is_bf16_on_cuda_only_and_bf16_asks_for_it_on_the_cpu():
    assert autocast_dtype("cpu", "auto") is None and autocast_dtype("cuda", "auto") is torch.bfloat16
    assert autocast_dtype("cpu", "bf16") is torch.bfloat16 and autocast_dtype("cuda:0", "fp32") is None
    with pytest.raises(ValueError, match=r"precision: expected one of auto, fp32, bf16, got 'half'"):
        check_precision("half")
    with pytest.raises(ConfigError, match=r"config field 'precision': expected one of auto, fp32, bf16"):
        TrainConfig(precision="fp16")
    assert TrainConfig().hash() == TrainConfig(precision="auto").hash() != TrainConfig(precision="bf16").hash()


def test_bf16_features_on_the_cpu_stay_within_a_percent_of_float32():
    torch.manual_seed(0)
    model = build_dit("DiT-T/4", input_size=8, in_channels=1, num_classes=10)
    for p in model.parameters():  # adaLN-Zero init makes every block the identity; perturb it
        p.data.add_(0.05 * torch.randn_like(p))
    args = dict(dataset="digits", timesteps=[0, 500], layers=[3], n_images=40, seed=0, progress=False, cache=False)
    f32, bf16 = extract_features(model, **args), extract_features(model, **args, precision="bf16")
    for key in f32.keys():
        a, b = f32.pooled[key], bf16.pooled[key]
        assert b.dtype == torch.float32 and not torch.equal(a, b)  # it did run in bf16
        assert (a - b).norm() / a.norm() < 1e-2
    with pytest.raises(ValueError, match="precision: expected one of"):
        extract_features(model, **args, precision="int8")


def test_a_bf16_training_run_trains_on_the_cpu(tiny_run):
    from aselect_core.train.rundir import RunDir

    run = RunDir(tiny_run(steps=3, precision="bf16"))
    assert run.config().precision == "bf16" and run.metrics().loss.notna().all()
