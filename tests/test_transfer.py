"""Selector transfer: a learned run starts its selector g_φ from another run's, frozen or fine-tuned; refused with
one line when the images differ, the source has no selector, or the policy is not `learned`."""
from __future__ import annotations

import pytest
import torch

from aselect_core.train import TrainConfig
from aselect_core.train.config import ConfigError
from aselect_core.train.transfer import selector_state

LEARNED = dict(policy="learned", policy_kwargs={"bins": 10, "update_every": 1})


@pytest.fixture(scope="module")
def source(tiny_run, tmp_path_factory):
    """A learned run on digits at 8 px whose selector has taken 4 updates."""
    return tiny_run(tmp_path_factory.mktemp("transfer") / "source", steps=4, **LEARNED)


def net_state(run) -> dict[str, torch.Tensor]:
    return {k: v for k, v in selector_state(run).items() if k.startswith("net.")}


def with_source(source, **extra) -> dict:
    return {**LEARNED, "policy_kwargs": {**LEARNED["policy_kwargs"], "selector_from": str(source), **extra}}


def test_a_frozen_transferred_selector_holds_the_source_state(tiny_run, source, tmp_path):
    frozen = tiny_run(tmp_path / "frozen", steps=4, data="mnist5k", **with_source(source, freeze_selector=True))
    src, got = net_state(source), net_state(frozen)
    assert set(src) == set(got) and all(torch.equal(src[k], got[k]) for k in src)
    assert int(selector_state(frozen)["updates"]) == 0  # no REINFORCE step, no reward passes


def test_a_fine_tuned_transferred_selector_starts_from_the_source_and_moves(tiny_run, source, tmp_path):
    tuned = tiny_run(tmp_path / "tuned", steps=4, data="mnist5k", **with_source(source))
    native = tiny_run(tmp_path / "native", steps=4, data="mnist5k", **LEARNED)
    src, got, own = net_state(source), net_state(tuned), net_state(native)
    assert int(selector_state(tuned)["updates"]) == 4
    assert not torch.equal(src["net.head.weight"], got["net.head.weight"])  # fine-tuned: it moved
    assert not torch.equal(own["net.head.weight"], got["net.head.weight"])  # and not from the native start


def test_transfer_refuses_other_images_a_source_without_selector_and_other_policies(tiny_run, source, tmp_path):
    with pytest.raises(ValueError, match=r"selector_from: .*source's selector was trained on images of shape "
                                         r"\(1, 8, 8\), this run's data are \(1, 16, 16\)"):
        tiny_run(tmp_path / "big", steps=2, image_size=16, **with_source(source))
    uniform = tiny_run(tmp_path / "uniform", steps=2)
    with pytest.raises(ValueError, match="selector_from: .*uniform trained with policy 'uniform'"):
        tiny_run(tmp_path / "from-uniform", steps=2, **with_source(uniform))
    with pytest.raises(ConfigError, match="policy_kwargs.selector_from': only the learned policy has a selector"):
        TrainConfig(policy="uniform", policy_kwargs={"selector_from": str(source)})


def test_a_warm_start_continues_a_slim_run_from_its_ema_weights_step_and_cost(tiny_run, tmp_path):
    from aselect_core.train.checkpoint import load_checkpoint, unprefixed
    from aselect_core.train.export import slim_run
    from aselect_core.train.rundir import RunDir
    from aselect_core.train.transfer import warm_start

    source = tiny_run(tmp_path / "source", steps=4)
    slim_run(source)
    start = warm_start(source)
    assert start.step == 4 and start.image_passes == RunDir(source).latest()["image_passes"]
    assert all(v.dtype == torch.float32 for v in start.weights.values() if v.is_floating_point())
    # one step on: the EMA moved from the source's weights by (1 - decay) of the way to the model's
    cont = tiny_run(tmp_path / "cont", steps=5, checkpoint_every=1, init_from=str(source))
    latest = RunDir(cont).latest()
    assert latest["step"] == 5 and latest["image_passes"] > start.image_passes
    assert RunDir(cont).metrics().step.tolist() == [5]
    ema = unprefixed("ema", load_checkpoint(RunDir(cont).latest_checkpoint())[0])
    key = "blocks.0.attn.qkv.weight"
    assert not torch.equal(ema[key], start.weights[key])
    assert torch.allclose(ema[key], start.weights[key], atol=1e-2)


def test_a_warm_start_refuses_no_steps_left_and_another_model(tiny_run, tmp_path):
    from aselect_core.train.loop import TrainingError

    source = tiny_run(tmp_path / "source", steps=3)
    with pytest.raises(TrainingError, match=r"init_from: .*source stopped at step 3; --steps 3 leaves nothing"):
        tiny_run(tmp_path / "same", steps=3, init_from=str(source))
    with pytest.raises(ValueError, match=r"init_from: .*source's weights do not fit this run's model \("):
        tiny_run(tmp_path / "wider", steps=4, model="DiT-T/2", init_from=str(source))
    with pytest.raises(ValueError, match=r"init_from: .*nowhere has no checkpoint"):
        tiny_run(tmp_path / "none", steps=4, init_from=str(tmp_path / "nowhere"))
