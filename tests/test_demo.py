"""The demo pipeline: trains and analyses every dataset × policy once, then is a no-op; slim shipping format."""
from __future__ import annotations

import pytest

import app.demo as demo
from aselect_core.model import load_dit
from aselect_core.train import RunDir


@pytest.fixture
def tiny_plan(monkeypatch):
    monkeypatch.setattr(demo, "DATASETS", ("digits",))
    monkeypatch.setitem(demo.PLANS, "quick", demo.DemoPlan(
        train=dict(model="DiT-N/4", image_size=8, batch_size=16, steps=4, checkpoint_every=4, curriculum_every=2,
                   curriculum_bins=10),
        analysis=dict(timesteps=[0, 500], layers=[1, 5], n_images=80, immse_images=16)))


def test_demo_trains_analyses_then_is_a_no_op(tiny_plan, tmp_path):
    assert not demo.is_complete(tmp_path, "quick")
    demo.run_demo(tmp_path, "quick", progress=False, slim=True)
    assert demo.is_complete(tmp_path, "quick")
    runs = sorted(p.name for p in tmp_path.iterdir())
    assert runs == ["digits-learned", "digits-uniform"]
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file() and "features" not in p.parts}
    demo.run_demo(tmp_path, "quick", progress=False, slim=True)
    assert stamps == {p: p.stat().st_mtime_ns for p in stamps}  # nothing retrained or re-analysed
    for name in runs:
        rd = RunDir(tmp_path / name)
        assert rd.config().policy == name.split("-")[1]
        assert (rd.analysis / "probe.parquet").is_file()
        assert load_dit(rd.path).config_name == "DiT-N/4"
