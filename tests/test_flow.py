"""Flow-matching DiTs (SiT): the interpolants and their SNR in closed form, the schedule registry, SiT-format
checkpoints (bare and train.py's, with args.path_type), and a probe grid over t in {0.1, 0.5, 0.9} end to end."""
from __future__ import annotations

import argparse
import math

import pytest
import torch

from analysis.features import extract_features, probe_splits
from analysis.probe import pixel_baseline, probe_grid
from aselect_core.diffusion import FLOW_PATHS, SCHEDULE_KINDS, FlowSchedule, NoiseSchedule, make_schedule
from aselect_core.model import CheckpointError, DiT, build_dit
from aselect_core.model.sit import is_flow_spec, load_flow_spec, load_sit

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

DEPTH = 6  # DiT-T/4


def sit_keys(depth: int) -> set[str]:
    """The state-dict keys of willisma/SiT models.py's SiT (timm PatchEmbed, Attention(qkv_bias=True), Mlp)."""
    per_block = ["attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2", "adaLN_modulation.1"]
    linears = ["x_embedder.proj", "t_embedder.mlp.0", "t_embedder.mlp.2", "final_layer.linear",
               "final_layer.adaLN_modulation.1", *(f"blocks.{i}.{m}" for i in range(depth) for m in per_block)]
    return {"pos_embed", "y_embedder.embedding_table.weight", *(f"{k}.{p}" for k in linears for p in ("weight", "bias"))}


def sit_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A tiny random-weight SiT state dict (1-channel 8×8 inputs, patch 4, 10 classes + null, learned sigma)."""
    torch.manual_seed(seed)
    model = build_dit("DiT-T/4", input_size=8, in_channels=1, num_classes=10)
    for p in model.parameters():  # adaLN-Zero init makes every block the identity; perturb it
        p.data.add_(0.05 * torch.randn_like(p))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert set(state) == sit_keys(DEPTH)
    return state


@pytest.fixture(scope="module")
def bare_sit(tmp_path_factory):
    """A bare SiT state dict, as the released SiT-XL-2-256x256.pt is."""
    path = tmp_path_factory.mktemp("sit") / "SiT-T-4.pt"
    torch.save(sit_state(), path)
    return path


def train_checkpoint(path, path_type: str):
    """SiT train.py's checkpoint: {"model", "ema", "opt", "args"} with its transport args."""
    state = sit_state()
    args = argparse.Namespace(model="SiT-T/4", path_type=path_type, prediction="velocity", loss_weight=None,
                              train_eps=1e-5, sample_eps=1e-3)
    torch.save({"model": state, "ema": state, "opt": {}, "args": args}, path)
    return path


# -- interpolants and SNR ---------------------------------------------------------------------------------------
def test_sit_linear_is_the_linear_interpolant_with_data_at_t_1_exactly():
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64), torch.randn(3, 2, 4, 4, generator=g,
                                                                                     dtype=torch.float64)
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    tv = t.view(-1, 1, 1, 1)
    sit, rf = FlowSchedule("sit-linear"), FlowSchedule("rf-linear")
    assert torch.equal(sit.q_sample(x0, t, eps), tv * x0 + (1 - tv) * eps)  # SiT's ICPlan: alpha = t
    assert torch.equal(rf.q_sample(x0, t, eps), (1 - tv) * x0 + tv * eps)  # rectified flow: noise at t = 1
    ends = torch.tensor([0.0, 1.0, 1.0], dtype=torch.float64)
    assert torch.equal(sit.q_sample(x0, ends, eps)[1:], x0[1:]) and torch.equal(sit.q_sample(x0, ends, eps)[0], eps[0])
    x32 = x0.float()
    assert sit.q_sample(x32, t, eps.float()).dtype == torch.float32
    assert (sit.data_at, rf.data_at) == (1.0, 0.0)
    assert "1 = data" in sit.time_axis and "1 = noise" in rf.time_axis


def test_snr_in_closed_form_for_every_path():
    t = torch.tensor([0.1, 0.25, 0.5, 0.9], dtype=torch.float64)
    torch.testing.assert_close(FlowSchedule("sit-linear").snr(t), (t / (1 - t)) ** 2)
    torch.testing.assert_close(FlowSchedule("rf-linear").snr(t), ((1 - t) / t) ** 2)
    torch.testing.assert_close(FlowSchedule("sit-gvp").snr(t), torch.tan(t * math.pi / 2) ** 2)
    alpha = torch.exp(-0.25 * (1 - t) ** 2 * 19.9 - 0.05 * (1 - t))  # SiT's VPCPlan, sigma_min 0.1, max 20
    torch.testing.assert_close(FlowSchedule("sit-vp").snr(t), alpha ** 2 / (1 - alpha ** 2))
    for kind in FLOW_PATHS:
        s = FlowSchedule(kind)
        torch.testing.assert_close(s.log_snr(t), s.snr(t).log())
        snr = s.snr(t)
        assert (snr.diff() > 0).all() == (s.data_at == 1.0)  # SNR grows towards the data end
    assert FlowSchedule("sit-linear").snr(1.0) == math.inf and FlowSchedule("sit-linear").snr(0.0) == 0
    assert FlowSchedule().snr(0.5).item() == pytest.approx(1.0)


def test_times_and_checked_timesteps_in_each_convention():
    flow, ddpm = FlowSchedule(), NoiseSchedule()
    assert flow.times(0.5, 3).dtype == torch.float64 and flow.times(0.5, 3).tolist() == [0.5] * 3
    assert ddpm.times(7, 2).dtype == torch.long and ddpm.times(7, 2).tolist() == [7, 7]
    assert flow.check_timesteps([0.9, 0.1, 0.5, 0.1, 1]) == [0.1, 0.5, 0.9, 1.0]
    assert ddpm.check_timesteps([500, 0, 500]) == [0, 500]
    for bad in ([1.5], [-0.1], [], ["x"]):
        with pytest.raises(ValueError, match=r"^timesteps: expected numbers in \[0, 1\]") as e:
            flow.check_timesteps(bad)
        assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match=r"^timesteps: expected integers in \[0, 1000\)"):
        ddpm.check_timesteps([1000])


def test_schedule_registry_rebuilds_every_kind_from_its_identity():
    assert set(SCHEDULE_KINDS) == {"linear", "cosine", *FLOW_PATHS}
    for s in (NoiseSchedule("cosine", 50), *(FlowSchedule(k) for k in FLOW_PATHS)):
        rebuilt = make_schedule(*s.identity)
        assert type(rebuilt) is type(s) and rebuilt.identity == s.identity
    assert NoiseSchedule().identity == ["linear", 1000]  # the cache key field DDPM banks always had
    for call in (lambda: make_schedule("vp"), lambda: FlowSchedule("linear")):
        with pytest.raises(ValueError, match="schedule kind: expected one of") as e:
            call()
        assert "\n" not in str(e.value)


# -- loading ----------------------------------------------------------------------------------------------------
def test_bare_sit_loads_as_a_dit_with_the_sit_linear_schedule(bare_sit):
    model, schedule = load_sit(bare_sit)
    assert isinstance(model, DiT) and not model.training and model.config_name == "SiT-T/4"
    assert schedule.identity == ["sit-linear"]
    state = sit_state()
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    x, y = torch.randn(2, 1, 8, 8), torch.tensor([3, 10])  # 10: the null class
    with torch.no_grad():
        near, far = model(x, torch.tensor([0.1, 0.1]), y), model(x, torch.tensor([0.9, 0.9]), y)
    assert near.shape == (2, 2, 8, 8) and not torch.allclose(near, far)  # continuous t reaches the embedder
    assert is_flow_spec(f"sit:{bare_sit}") and not is_flow_spec(bare_sit) and not is_flow_spec("folder:x")
    spec_model, spec_schedule = load_flow_spec(f"sit:{bare_sit}")
    assert spec_schedule.identity == ["sit-linear"] and spec_model.config == model.config
    assert load_flow_spec(f"rf-linear:{bare_sit}")[1].identity == ["rf-linear"]


@pytest.mark.parametrize("path_type, kind", [("Linear", "sit-linear"), ("GVP", "sit-gvp"), ("VP", "sit-vp")])
def test_train_checkpoint_reads_its_path_type(tmp_path, path_type, kind):
    path = train_checkpoint(tmp_path / "0050000.pt", path_type)
    model, schedule = load_flow_spec(f"sit:{path}")
    assert schedule.kind == kind and load_sit(path, kind)[1].kind == kind
    assert set(model.state_dict()) == sit_keys(DEPTH)


def test_bad_sit_inputs_get_one_line_errors(tmp_path, bare_sit):
    gvp = train_checkpoint(tmp_path / "gvp.pt", "GVP")
    odd = train_checkpoint(tmp_path / "odd.pt", "Cosine")
    cases = [(lambda: load_sit(tmp_path / "missing.pt"), CheckpointError, "checkpoint not found"),
             (lambda: load_flow_spec(f"sit-linear:{gvp}"), CheckpointError, r"trained with path_type 'GVP' \(sit-gvp\)"),
             (lambda: load_sit(odd), CheckpointError, "'Cosine' is not a SiT path type"),
             (lambda: load_sit(bare_sit, "linear"), ValueError, "flow schedule kind: expected one of"),
             (lambda: load_flow_spec(str(bare_sit)), ValueError, "model spec: expected PREFIX:PATH")]
    for call, error, message in cases:
        with pytest.raises(error, match=message) as e:
            call()
        assert "\n" not in str(e.value)


# -- the probe grid over t --------------------------------------------------------------------------------------
def test_probe_grid_over_flow_time_end_to_end_and_cached(tmp_path, bare_sit):
    ts = [0.9, 0.1, 0.5]
    args = dict(dataset="digits", timesteps=ts, layers=[0, -1], n_images=40, n_test=20, seed=0, progress=False,
                cache_dir=tmp_path / "features")
    bank = extract_features(f"sit:{bare_sit}", **args)
    assert bank.timesteps == [0.1, 0.5, 0.9] and bank.meta["schedule"] == ["sit-linear"]
    assert bank.keys() == [(t, k) for t in (0.1, 0.5, 0.9) for k in ("block.0", "block.5")]
    assert bank.image_passes == 60 * 3 and not bank.meta["cached"]
    grid = probe_grid(bank, knn=False)
    assert sorted(set(grid.timestep)) == [0.1, 0.5, 0.9] and grid.timestep.dtype == float and len(grid) == 6
    assert grid.accuracy.between(0, 1).all()
    t = torch.tensor(grid.timestep.tolist(), dtype=torch.float64)
    torch.testing.assert_close(FlowSchedule().snr(t), (t / (1 - t)) ** 2)  # what a figure labels the axis with

    again = extract_features(f"sit:{bare_sit}", **args)  # float keys survive the cache
    assert again.meta["cached"] and set(again.pooled) == set(bank.pooled)
    assert all(torch.equal(again.pooled[k], bank.pooled[k]) for k in bank.keys())
    other = extract_features(f"rf-linear:{bare_sit}", **{**args, "timesteps": [0.5]})  # the schedule is in the key
    assert not other.meta["cached"] and other.meta["schedule"] == ["rf-linear"]
    torch.testing.assert_close(other.pooled[(0.5, "block.5")], bank.pooled[(0.5, "block.5")])  # t = 0.5: same x_t

    model, schedule = load_sit(bare_sit)  # a DiT object with a FlowSchedule reads the same features
    same = extract_features(model, **{**args, "cache_dir": None, "cache": False}, schedule=schedule)
    torch.testing.assert_close(same.pooled[(0.9, "block.5")], bank.pooled[(0.9, "block.5")])


def test_flow_x_t_in_the_bank_is_the_interpolant_of_each_image_and_its_noise():
    splits = probe_splits("digits", 20, seed=0, n_test=10, image_size=8)
    sit = FlowSchedule()
    eps, x0 = splits.noise("train"), splits.train.images
    assert torch.equal(splits.noisy("train", 1.0, sit), x0) and torch.equal(splits.noisy("train", 0.0, sit), eps)
    torch.testing.assert_close(splits.noisy("train", 0.25, sit), 0.25 * x0 + 0.75 * eps)
    pixels = pixel_baseline(splits, (0.1, 0.9), sit, knn=False)
    assert pixels.timestep.tolist() == [0.1, 0.9] and (pixels.layer == "pixels").all()


def test_flow_timesteps_outside_0_1_are_refused_by_extract_features(bare_sit):
    with pytest.raises(ValueError, match=r"^timesteps: expected numbers in \[0, 1\] \(flow time") as e:
        extract_features(f"sit:{bare_sit}", "digits", [0.5, 2.0], [0], 10, cache=False, progress=False)
    assert "\n" not in str(e.value)


@pytest.fixture(scope="module")
def sit_analysis(tmp_path_factory, bare_sit):
    """The folder `aselect analyze --model sit:PATH --timesteps 0.1,0.5,0.9` writes (a model without a run dir)."""
    from app.cli import main

    out = tmp_path_factory.mktemp("sit-analysis") / "sit-out"
    assert main(["analyze", "--model", f"sit:{bare_sit}", "--data", "digits", "--image-size", "8",
                 "--timesteps", "0.1,0.5,0.9", "--layers", "0,5", "--n-images", "40", "--out", str(out)]) == 0
    return out


def test_cli_analyze_model_sit_over_flow_times(sit_analysis):
    """The grids run over the SiT's own t, and the selections keep t fractional (not truncated to 0)."""
    import json

    import pandas as pd

    probe = pd.read_parquet(sit_analysis / "analysis" / "probe.parquet")
    assert sorted(probe.timestep.unique()) == [0.1, 0.5, 0.9] and {"block.0", "block.5", "pixels"} == set(probe.layer)
    model = json.loads((sit_analysis / "model.json").read_text())
    assert model["schedule"] == ["sit-linear"] and model["time_axis"].startswith("flow time t")
    assert model["model"].startswith("sit:") and model["name"] == "sit:SiT-T-4.pt"
    summary = json.loads((sit_analysis / "analysis" / "summary.json").read_text())
    dit = probe[probe.layer != "pixels"]
    assert summary["best"]["timestep"] == dit.loc[dit.accuracy.idxmax(), "timestep"] in (0.1, 0.5, 0.9)
    chosen = pd.read_parquet(sit_analysis / "analysis" / "selection.parquet").timestep
    assert set(chosen) <= {0.1, 0.5, 0.9}


def test_a_model_analysis_opens_as_a_run(sit_analysis):
    """RunDir.info reads model.json; the comparison and the feature source treat the folder like a run."""
    from analysis.compare import run_row
    from analysis.features import resolve_source
    from aselect_core.train.rundir import PRETRAINED, RunDir

    info = RunDir(sit_analysis).info()
    assert (info.data, info.model, info.policy, info.steps, info.image_size, info.depth, info.schedule) == (
        "digits", "sit:SiT-T-4.pt", PRETRAINED, None, 8, DEPTH, ("sit-linear",))
    row = run_row(sit_analysis)
    assert row["status"] == "ok" and row["missing"] == "" and row["oracle_timestep"] in (0.1, 0.5, 0.9)
    src = resolve_source(sit_analysis)
    assert isinstance(src.schedule, FlowSchedule) and src.data_spec == "digits"


def test_app_pages_open_a_model_analysis(sit_analysis, monkeypatch):
    """Every page of the app runs without an exception on a runs root holding only an `analyze --model` folder."""
    from pathlib import Path

    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from app.serve import RUNS_ENV
    from aselect_core.train.rundir import PRETRAINED

    app = Path(__file__).resolve().parents[1] / "app"
    monkeypatch.setenv(RUNS_ENV, str(sit_analysis.parent))
    st.cache_data.clear()
    for page in [app / "Home.py", *sorted((app / "pages").glob("*.py"))]:
        at = AppTest.from_file(str(page), default_timeout=120).run()
        assert not at.exception, (page.name, at.exception)
    table = AppTest.from_file(str(app / "Home.py"), default_timeout=120).run().dataframe[0].value
    row = table.set_index("run").loc["sit-out"]
    assert (row.policy, row.steps, row.status) == (PRETRAINED, "–", "analysed")


def test_figures_of_a_model_analysis_label_flow_time_with_log_snr(sit_analysis):
    """The SiT's own t on the axis, log SNR = 2 log(t / (1 - t)) under each tick (data at t = 1)."""
    from analysis.figures import build_figure

    fig, _ = build_figure("probe_heatmap", sit_analysis)
    assert list(fig.layout.xaxis.ticktext) == [f"{t:g}<br>{2 * math.log(t / (1 - t)):.1f}" for t in (0.1, 0.5, 0.9)]
    assert fig.layout.xaxis.title.text.startswith("flow time t ∈ [0, 1] (1 = data, 0 = noise)")
