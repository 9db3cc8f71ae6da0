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
