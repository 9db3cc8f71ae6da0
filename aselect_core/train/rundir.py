"""The run dir on disk: config.json, metrics.parquet, curriculum.parquet, checkpoints/, latest.json, train.log.

A folder written by `aselect analyze --model` (a model trained elsewhere) holds model.json instead of config.json
and no training files; `RunDir.info()` reads either, so the app and the comparison open both alike.
Everything that reads a run (analysis, the app) goes through `RunDir`, so the layout lives in one place.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from aselect_core.io import atomic_write_json, read_json
from aselect_core.model.dit import dit_depth
from aselect_core.train.config import TrainConfig

PRETRAINED = "pretrained"  # RunInfo.policy of a model analysed without a run (trained elsewhere)


class RunDirError(ValueError):
    """A run dir that is missing or malformed; the message names the file."""


# Every file the analyses write under RUN/analysis/, by name: the one place a path is spelled. `RunDir.artefact(name)`
# resolves one; `artefact_ref(name)` is its path relative to the run dir ("analysis/probe.parquet").
ARTEFACTS: dict[str, str] = {
    "probe": "probe.parquet",  # the oracle grid: accuracy (+ CI) per (timestep, layer), pixel rows
    "random_init": "random_init.parquet",  # the same grid on the untrained DiT of the run's architecture
    "hfr": "hfr.parquet", "mi": "mi.parquet", "immse": "immse.parquet",
    "selection": "selection.parquet",  # one row per selection method: its (t, layer), regret, cost
    "summary": "summary.json",  # the run's answer: best cell, baselines, selections, segmentation
    "oracle": "oracle.parquet", "oracle_setting": "oracle.json",  # the oracle grid other methods are scored on
    "umap": "umap.parquet", "attribution": "attribution.npz",
    "segmentation": "segmentation.parquet", "segmentation_masks": "segmentation_masks.npz",
    "generation": "generation.json", "features": "features",  # features/: the cached feature banks
}


def artefact_ref(name: str) -> str:
    """Artefact `name`'s path relative to a run dir; a one-line ValueError listing the names otherwise."""
    if name not in ARTEFACTS:
        raise ValueError(f"artefact: expected one of {', '.join(ARTEFACTS)}, got {name!r}")
    return f"analysis/{ARTEFACTS[name]}"


@dataclass(frozen=True)
class RunInfo:
    """What a run dir's analyses were computed on: its data, model, training policy and steps (None for a model
    trained elsewhere), image size, depth, the schedule's identity (`make_schedule(*schedule)` rebuilds it) and,
    for a model analysed by `aselect analyze --model`, the model spec it read and its VAE folder (latent DiTs)."""

    data: str
    model: str
    policy: str
    steps: int | None
    image_size: int
    depth: int
    schedule: tuple
    source: str | None = None
    vae: str | None = None


@dataclass(frozen=True)
class RunDir:
    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    config_path = property(lambda self: self.path / "config.json")
    model_info_path = property(lambda self: self.path / "model.json")  # `aselect analyze --model` output
    metrics_path = property(lambda self: self.path / "metrics.parquet")
    curriculum_path = property(lambda self: self.path / "curriculum.parquet")
    class_curriculum_path = property(lambda self: self.path / "curriculum_classes.parquet")
    checkpoints = property(lambda self: self.path / "checkpoints")
    latest_path = property(lambda self: self.path / "latest.json")
    log_path = property(lambda self: self.path / "train.log")
    analysis = property(lambda self: self.path / "analysis")

    def artefact(self, name: str) -> Path:
        """The path of analysis artefact `name` (`ARTEFACTS`) in this run dir."""
        return self.path / artefact_ref(name)

    def is_run(self) -> bool:
        return self.config_path.is_file()

    def config(self) -> TrainConfig:
        if not self.config_path.is_file():
            raise RunDirError(f"{self.config_path}: not found (is {self.path} a run dir?)")
        return TrainConfig.recorded(read_json(self.config_path, RunDirError), source=str(self.config_path))

    def is_model_analysis(self) -> bool:
        """A folder of `aselect analyze --model`: model.json, no training config."""
        return self.model_info_path.is_file() and not self.config_path.is_file()

    def info(self) -> RunInfo:
        """The run's `RunInfo`, from config.json, else model.json; a RunDirError naming the file otherwise."""
        if not self.is_model_analysis():
            cfg = self.config()
            return RunInfo(cfg.data, cfg.model, cfg.policy, cfg.steps, cfg.image_size, dit_depth(cfg.model),
                           (cfg.schedule, cfg.num_timesteps))
        path = self.model_info_path
        m = read_json(path, RunDirError)
        try:
            return RunInfo(m["data"], m.get("name") or Path(m["model"]).name, PRETRAINED, None, int(m["image_size"]),
                           int(m["config"]["depth"]), tuple(m["schedule"]), m["model"],
                           (m.get("vae") or {}).get("path"))
        except (KeyError, TypeError, ValueError) as e:
            raise RunDirError(f"{path}: expected data, model, image_size, config.depth and schedule ({e!r})") from None

    def write_config(self, config: TrainConfig) -> None:
        atomic_write_json(self.config_path, config.to_dict())

    def latest(self) -> dict[str, Any] | None:
        """latest.json: {checkpoint, step, status, ...}, or None before the first checkpoint."""
        if not self.latest_path.is_file():
            return None
        return read_json(self.latest_path, RunDirError)

    def write_latest(self, **fields: Any) -> None:
        atomic_write_json(self.latest_path, fields)

    def summary_or_empty(self) -> dict[str, Any]:
        """analysis/summary.json, or {} when there is none or it is unreadable (for writers about to replace it)."""
        try:
            return read_json(self.artefact("summary"))
        except (OSError, ValueError):
            return {}

    def latest_checkpoint(self) -> Path | None:
        latest = self.latest()
        return self.path / latest["checkpoint"] if latest and latest.get("checkpoint") else None

    def _read(self, path: Path) -> pd.DataFrame:
        if not path.is_file():
            raise RunDirError(f"{path}: not found")
        try:
            return pd.read_parquet(path)
        except Exception as e:  # pyarrow raises several types for a corrupt file
            raise RunDirError(f"{path}: not a readable parquet file ({type(e).__name__})") from None

    def metrics(self) -> pd.DataFrame:
        return self._read(self.metrics_path)

    def curriculum(self) -> pd.DataFrame:
        return self._read(self.curriculum_path)

    def class_curriculum(self) -> pd.DataFrame | None:
        """Per-label p(t | y) snapshots (step, label, bin, t_lo, t_hi, probability); None for policies without."""
        return self._read(self.class_curriculum_path) if self.class_curriculum_path.is_file() else None
