"""Trainer: run dir contents, counted cost, exact resume, faults (NaN, corrupt checkpoint, signals, kill), DDP."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from aselect_core.train import ConfigError, RunDir, TrainConfig, TrainingError, TrainingInterrupted, train
from aselect_core.train import checkpoint as ck
from aselect_core.train.distributed import DistContext, sharded_features
from aselect_core.train.loop import Trainer

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: tiny runs on shared cores


def tiny(out: Path, **kw) -> TrainConfig:
    """A run that takes about a second: 8×8 digits, the tiny DiT, 4 tokens per image."""
    base = dict(data="digits", model="DiT-T/4", image_size=8, batch_size=16, steps=8, checkpoint_every=4,
                log_every=2, curriculum_every=2, curriculum_bins=10, seed=3, out=str(out))
    return TrainConfig(**{**base, **kw})


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(RunDir(run).latest_checkpoint())


def comparable(metrics: pd.DataFrame) -> pd.DataFrame:
    return metrics.drop(columns=["wall_seconds"])


def test_run_dir_layout_and_counted_cost(tmp_path):
    run = train(tiny(tmp_path / "r", policy="loss-aware"), progress=False)
    rd = RunDir(run)
    assert json.loads(rd.config_path.read_text())["policy"] == "loss-aware"
    m = rd.metrics()
    assert list(m.step) == list(range(1, 9))
    assert {"loss", "lr", "grad_norm", "image_passes", "wall_seconds", "loss_t0000_0099"} <= set(m.columns)
    assert list(m.image_passes) == [3 * 16 * s for s in range(1, 9)]  # forward 1 + backward 2 per image
    assert m.wall_seconds.is_monotonic_increasing
    c = rd.curriculum()
    assert sorted(c.step.unique()) == [0, 2, 4, 6, 8]
    assert c.groupby("step").probability.sum().round(6).eq(1.0).all()
    assert (c.t_hi - c.t_lo + 1).sum() == 1000 * 5
    latest = rd.latest()
    assert latest["status"] == "finished" and latest["step"] == 8
    assert [p.name for p in ck.list_checkpoints(rd.checkpoints)] == ["step_0000004.safetensors",
                                                                     "step_0000008.safetensors"]
    assert rd.log_path.read_text().count("checkpoint") == 2


def test_checkpoint_loads_as_dit(tmp_path):
    from aselect_core.model import load_dit

    run = train(tiny(tmp_path / "r"), progress=False)
    model = load_dit(run)
    sd = weights(run)
    assert torch.equal(model.state_dict()["pos_embed"], sd["ema.pos_embed"])
    assert torch.equal(model.x_embedder.proj.weight, sd["ema.x_embedder.proj.weight"])


def test_resume_is_exact(tmp_path):
    straight = train(tiny(tmp_path / "a"), progress=False)
    train(tiny(tmp_path / "b", steps=4), progress=False)
    resumed = train(tiny(tmp_path / "b", resume=True), progress=False)
    pd.testing.assert_frame_equal(comparable(RunDir(straight).metrics()), comparable(RunDir(resumed).metrics()))
    a, b = weights(straight), weights(resumed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a if not k.startswith("rng.")), "weights differ after resume"


def test_existing_run_is_not_overwritten(tmp_path):
    train(tiny(tmp_path / "r", steps=4), progress=False)
    with pytest.raises(TrainingError, match="already holds checkpoints; pass --resume"):
        train(tiny(tmp_path / "r", steps=4), progress=False)


def test_resume_with_other_settings_is_refused(tmp_path):
    train(tiny(tmp_path / "r", steps=4), progress=False)
    with pytest.raises(TrainingError, match="written by a different config"):
        train(tiny(tmp_path / "r", lr=3e-4, resume=True), progress=False)


def test_corrupt_checkpoint_falls_back_to_previous(tmp_path, capsys):
    straight = train(tiny(tmp_path / "a"), progress=False)
    run = train(tiny(tmp_path / "b", steps=8), progress=False)
    newest = RunDir(run).checkpoints / "step_0000008.safetensors"
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated
    with pytest.raises(ck.CheckpointError, match=r"step_0000008.safetensors: sha256 does not match"):
        ck.load_checkpoint(newest)
    resumed = train(tiny(tmp_path / "b", resume=True), progress=False)
    assert "skipping bad checkpoint" in RunDir(resumed).log_path.read_text()
    a, b = weights(straight), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a if k.startswith(("model.", "ema.", "optim.")))


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    cfg = tiny(tmp_path / "r")
    trainer = Trainer(cfg, DistContext(0, 1, torch.device("cpu")), progress=False)
    trainer.prepare()
    original = trainer.model.forward

    def poisoned(x, t, y):
        out = original(x, t, y)
        return out * float("nan") if trainer.state.step >= 5 else out

    trainer.model.forward = poisoned
    with pytest.raises(TrainingError, match=r"non-finite loss at step 6; stopped, last good checkpoint kept"):
        trainer.fit()
    rd = RunDir(cfg.out)
    assert rd.latest()["status"] == "failed" and rd.latest()["step"] == 4
    tensors, sidecar = ck.load_checkpoint(rd.latest_checkpoint())
    assert sidecar["step"] == 4 and all(torch.isfinite(v).all() for k, v in tensors.items() if k.startswith("model."))


def test_sigterm_saves_and_exits_cleanly(tmp_path):
    cfg = tiny(tmp_path / "r", steps=50, checkpoint_every=100)
    trainer = Trainer(cfg, DistContext(0, 1, torch.device("cpu")), progress=False)
    trainer.prepare()
    observe = trainer.policy.observe

    def observe_then_signal(fb):
        if fb.step == 4:
            signal.raise_signal(signal.SIGTERM)
        return observe(fb)

    trainer.policy.observe = observe_then_signal
    with pytest.raises(TrainingInterrupted, match=r"interrupted at step 5 of 50; checkpoint saved"):
        trainer.fit()  # raised, not returned: no caller goes on with the unfinished run
    latest = RunDir(cfg.out).latest()
    assert latest["status"] == "interrupted" and latest["step"] == 5


def test_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="config field 'steps': expected a positive integer, got 0"):
        TrainConfig(steps=0)
    with pytest.raises(ConfigError, match="unknown field 'stepz'"):
        TrainConfig.from_dict({"stepz": 3})
    bad = tmp_path / "c.yaml"
    bad.write_text("steps: [1\n")
    with pytest.raises(ConfigError, match=r"c.yaml: not valid YAML/JSON"):
        TrainConfig.from_file(bad)
    with pytest.raises(ConfigError, match=r"nope.yaml: config file not found"):
        TrainConfig.from_file(tmp_path / "nope.yaml")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "aselect_core.train", "--no-progress", "--data", "mnist5k", "--model", "DiT-T/4",
            "--image-size", "16", "--batch-size", "64", "--seed", "1", *args]


def test_hard_kill_then_resume_matches_uninterrupted(tmp_path):
    """SIGKILL (no chance to save) mid-run; --resume continues from the last checkpoint to identical weights."""
    subprocess.run(_cli("--steps", "40", "--checkpoint-every", "10", "--out", str(tmp_path / "a")),
                   check=True, env=_env(), capture_output=True)
    proc = subprocess.Popen(_cli("--steps", "40", "--checkpoint-every", "10", "--out", str(tmp_path / "b")),
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = tmp_path / "b" / "latest.json"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if latest.is_file() and json.loads(latest.read_text())["step"] >= 20:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait()
    killed_at = json.loads(latest.read_text())["step"]
    assert 20 <= killed_at < 40, f"the kill landed at step {killed_at}, not mid-run"
    subprocess.run(_cli("--steps", "40", "--checkpoint-every", "10", "--out", str(tmp_path / "b"), "--resume"),
                   check=True, env=_env(), capture_output=True)
    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a if k.startswith(("model.", "ema.", "optim."))), killed_at
    pd.testing.assert_frame_equal(comparable(RunDir(tmp_path / "a").metrics()),
                                  comparable(RunDir(tmp_path / "b").metrics()))


@pytest.mark.parametrize("policy, extra", [("loss-aware", []), ("learned", ["--policy-arg", "update_every=2"])])
def test_ddp_two_cpu_processes(tmp_path, policy, extra):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
           "-m", "aselect_core.train", "--no-progress", "--data", "digits", "--model", "DiT-T/4", "--image-size", "8",
           "--batch-size", "8", "--steps", "6", "--checkpoint-every", "3", "--policy", policy, *extra,
           "--out", str(out)]
    res = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    rd = RunDir(out)
    m = rd.metrics()
    selector = [2 * 8 * 2 * -(-s // 2) if policy == "learned" else 0 for s in range(1, 7)]  # updates at 0, 2, 4
    assert list(m.image_passes) == [3 * 8 * 2 * s + sel for s, sel in zip(range(1, 7), selector)]  # both ranks
    tensors, sidecar = ck.load_checkpoint(rd.latest_checkpoint())
    assert sidecar["world_size"] == 2
    shared = [k for k in tensors if k.startswith("policy.0.") and "generator" not in k]
    assert shared  # the selector's weights, optimiser and marginal for the learned policy
    for key in shared:  # every rank took the same selector steps from the same gathered batch
        assert torch.equal(tensors[key], tensors["policy.1." + key[len("policy.0."):]]), key
    assert not torch.equal(tensors["rng.0.torch"], tensors["rng.1.torch"])  # ranks draw different noise


def _toy_features(x0, t, noise=None):
    """(B, 1): a function of x0, t and the noise that tells every row apart, recording its batch sizes."""
    _toy_features.sizes.append(len(x0))
    return ((x0 + noise).flatten(1).sum(1, keepdim=True) * (t[:, None] + 1)).float()


def _sharded_rank(rank: int, init: str, out: str) -> None:
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    _toy_features.sizes = []
    gen = torch.Generator().manual_seed(0)
    x0, t = torch.randn(8, 1, 2, 2, generator=gen), torch.arange(8)  # the gathered batch, the same on both ranks
    torch.manual_seed(7)  # the policy's private_rng: the same state on both ranks
    f = sharded_features(_toy_features, DistContext(rank, 2, torch.device("cpu")))(x0, t)
    torch.save({"features": f, "sizes": _toy_features.sizes}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def test_sharded_features_split_the_gathered_batch_and_match_one_process(tmp_path):
    torch.multiprocessing.spawn(_sharded_rank, args=(f"file://{tmp_path}/store", str(tmp_path)), nprocs=2)
    x0, t = torch.randn(8, 1, 2, 2, generator=torch.Generator().manual_seed(0)), torch.arange(8)
    torch.manual_seed(7)
    _toy_features.sizes = []
    alone = sharded_features(_toy_features, DistContext(0, 1, torch.device("cpu")))  # one process: unchanged
    expected = _toy_features(x0, t, torch.randn_like(x0))
    assert alone is _toy_features
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert got["sizes"] == [4]  # each rank ran its own half, not all 8 images
        torch.testing.assert_close(got["features"], expected, rtol=0, atol=0)


def test_learned_policy_logs_per_class_curriculum_and_resumes_exactly(tmp_path):
    kw = dict(policy="learned", policy_kwargs={"bins": 10, "update_every": 2})
    straight = train(tiny(tmp_path / "a", **kw), progress=False)
    train(tiny(tmp_path / "b", steps=4, **kw), progress=False)
    resumed = train(tiny(tmp_path / "b", resume=True, **kw), progress=False)
    per_class = RunDir(straight).class_curriculum()
    assert per_class is not None and set(per_class.label) <= set(range(10))
    assert per_class.groupby(["step", "label"]).probability.sum().round(6).eq(1.0).all()
    pd.testing.assert_frame_equal(per_class, RunDir(resumed).class_curriculum())
    pd.testing.assert_frame_equal(comparable(RunDir(straight).metrics()), comparable(RunDir(resumed).metrics()))
    a, b = weights(straight), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a if not k.startswith("rng."))


def test_slim_export_loads_as_dit_and_refuses_resume(tmp_path):
    from aselect_core.model import load_dit
    from aselect_core.train.export import slim_run

    run = train(tiny(tmp_path / "r"), progress=False)
    full = load_dit(run)
    path = slim_run(run)
    assert [p.name for p in ck.list_checkpoints(RunDir(run).checkpoints)] == [path.name]
    tensors, sidecar = ck.load_checkpoint(path)
    assert sidecar["slim"] == "torch.float16" and all(k.startswith("ema.") for k in tensors)
    assert tensors["ema.blocks.0.attn.qkv.weight"].dtype == torch.float16
    assert tensors["ema.pos_embed"].dtype == torch.float32
    slim = load_dit(run)
    for (k, a), b in zip(full.state_dict().items(), slim.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-3, rtol=1e-3), k
    assert slim_run(run) == path  # idempotent
    with pytest.raises(TrainingError, match="a slim export .EMA weights only. cannot be resumed"):
        train(tiny(tmp_path / "r", steps=12, resume=True), progress=False)


def test_compile_flag_trains_the_same_run_under_the_same_hash(tmp_path, monkeypatch):
    """`compile: true` compiles the training model's blocks (not the EMA copy) and leaves the trajectory and the
    config hash as they are, so a run may be resumed with or without it."""
    import aselect_core.train.loop as loop
    from aselect_core.model import compile_blocks

    compiled = []
    monkeypatch.setattr(loop, "compile_blocks", lambda m: compiled.append(m) or compile_blocks(m, backend="eager"))
    eager = train(tiny(tmp_path / "eager"), progress=False)
    fast = train(tiny(tmp_path / "compiled", compile=True), progress=False)
    assert len(compiled) == 1
    assert tiny(tmp_path / "a").hash() == tiny(tmp_path / "b", compile=True).hash()
    assert all(torch.allclose(weights(fast)[k], weights(eager)[k], atol=1e-5) for k in weights(eager))
    with pytest.raises(ConfigError, match="config field 'compile': expected true or false, got 'yes'"):
        tiny(tmp_path / "c", compile="yes")


def test_ema_warmup_follows_a_short_runs_weights_and_old_runs_keep_their_hash(tmp_path):
    """With the warm-up, the EMA of a short run carries almost nothing of its initialisation; a config.json written
    before the field existed reads back as trained (no warm-up) under its old hash, and resumes."""
    from aselect_core.train.loop import ema_decay_at

    cfg = tiny(tmp_path / "a")
    assert [ema_decay_at(cfg, s) for s in (0, 8, 90)] == [1 / 10, 9 / 18, min(cfg.ema_decay, 91 / 100)]
    assert ema_decay_at(cfg, 10_000) == cfg.ema_decay == ema_decay_at(tiny(tmp_path / "b", ema_warmup=False), 0)
    runs = {w: train(tiny(tmp_path / f"w{w}", steps=16, ema_warmup=w), progress=False) for w in (True, False)}
    gap = {}  # how far the EMA trails the weights, summed over tensors
    for warm, run in runs.items():
        w = weights(run)
        gap[warm] = sum((w[f"ema.{k[6:]}"] - w[k]).norm().item() for k in w if k.startswith("model."))
    assert gap[True] < gap[False] / 4, gap  # 0.999^16: the plain EMA is still ~98% its initialisation
    old = RunDir(runs[False])
    recorded = json.loads(old.config_path.read_text())
    old.config_path.write_text(json.dumps({k: v for k, v in recorded.items() if k != "ema_warmup"}))
    assert old.config().ema_warmup is False
    assert old.config().hash() == TrainConfig(**{**recorded, "ema_warmup": False}).hash()
    resumed = train(TrainConfig(**{**old.config().to_dict(), "steps": 20, "resume": True}), progress=False)
    assert RunDir(resumed).latest()["step"] == 20
