"""The out-of-the-box demo: small DiTs on two embedded datasets under two policies, trained, analysed, served.

`run_demo` is idempotent: a run that finished is not trained again (an interrupted one resumes), and an
analysed run is not analysed again — so `aselect demo` on the shipped `data/demo_runs/` opens the app at once.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aselect_core.train import RunDir, TrainConfig, train
from aselect_core.train.export import slim_run

DATASETS = ("mnist5k", "shapes")
POLICIES = ("uniform", "learned")


@dataclass(frozen=True)
class DemoPlan:
    """Training and analysis budget of one demo flavour."""

    train: dict[str, Any]
    analysis: dict[str, Any]


PLANS = {
    "full": DemoPlan(
        train=dict(model="DiT-N/4", image_size=16, batch_size=64, steps=1200, lr=3e-4, warmup_steps=50,
                   ema_decay=0.995, checkpoint_every=400, keep_last=1, curriculum_every=50, curriculum_bins=50),
        analysis=dict(timesteps=list(range(0, 1000, 50)), n_images=1000, immse_images=256, attribution_images=4)),
    "quick": DemoPlan(
        train=dict(model="DiT-N/4", image_size=16, batch_size=32, steps=60, lr=3e-4, ema_decay=0.9,
                   checkpoint_every=60, keep_last=1, curriculum_every=10, curriculum_bins=20),
        analysis=dict(timesteps=list(range(0, 1000, 200)), layers=[1, 3, 5], n_images=200, immse_images=64,
                      attribution_images=2)),
}


def demo_configs(out: Path, plan: str = "full", seed: int = 0) -> list[TrainConfig]:
    """One TrainConfig per dataset × policy, writing to `out/<dataset>-<policy>`."""
    p = PLANS[plan]
    return [TrainConfig(data=data, policy=policy, seed=seed, out=str(out / f"{data}-{policy}"), **p.train)
            for data in DATASETS for policy in POLICIES]


def is_trained(run: Path) -> bool:
    latest = RunDir(run).latest()
    return bool(latest) and latest.get("status") == "finished"


def is_analysed(run: Path) -> bool:
    return RunDir(run).artefact("summary").is_file()


def is_complete(out: Path, plan: str = "full") -> bool:
    """True when every demo run under `out` is trained and analysed."""
    return all(is_trained(Path(c.out)) and is_analysed(Path(c.out)) for c in demo_configs(out, plan))


def run_demo(out: Path, plan: str = "full", seed: int = 0, progress: bool = True, slim: bool = False) -> Path:
    """Train and analyse whatever is missing under `out`; returns `out` (the runs root for the app).

    `slim` keeps only half-precision EMA weights of each trained run (how `data/demo_runs/` is shipped) and
    analyses those, so the shipped analyses describe exactly the shipped weights.
    """
    from analysis.pipeline import analyze_run

    for config in demo_configs(out, plan, seed):
        run = Path(config.out)
        if not is_trained(run):
            config.resume = RunDir(run).checkpoints.is_dir()
            train(config, progress=progress)
        if slim:
            slim_run(run)
        if not is_analysed(run):
            analyze_run(run, seed=seed, progress=progress, **PLANS[plan].analysis)
    return out
