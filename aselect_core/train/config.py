"""TrainConfig: every knob of a training run, loadable from YAML/JSON and from CLI flags."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from aselect_core.precision import PRECISIONS
from aselect_core.train.objectives import OBJECTIVES


class ConfigError(ValueError):
    """A bad training configuration; the message names the field and what was expected."""


SELECTOR_FROM = "selector_from"  # policy kwarg: the run whose selector a learned run starts from (train.transfer)
# fields added after runs were first written, hashed only when they differ from the value every run had before
# the field existed (its default, except where RECORDED_BEFORE says otherwise), so the hash of every existing run
# (and so its resume) is unchanged
HASHED_WHEN_SET: dict[str, Any] = {"objective": "denoise", "init_from": None, "precision": "auto",
                                   "ema_warmup": False}
# how a run trained whose recorded config.json predates a field (`TrainConfig.recorded`): runs written before the
# EMA warm-up existed trained without it, while a new run's default is to warm up
RECORDED_BEFORE: dict[str, Any] = {"ema_warmup": False}


@dataclass
class TrainConfig:
    """A training run. `out` is the run dir; everything else is recorded in its config.json."""

    data: str = "mnist5k"
    model: str = "DiT-T/4"
    objective: str = "denoise"  # a key of OBJECTIVES: "denoise" (DiT) or "mae" (the MAE baseline)
    policy: str = "uniform"
    policy_kwargs: dict[str, Any] = field(default_factory=dict)
    init_from: str | None = None  # a run dir whose latest EMA weights the DiT starts from (train.transfer)
    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    ema_warmup: bool = True  # decay min(ema_decay, (1 + step) / (10 + step)): a short run's EMA forgets its init
    seed: int = 0
    image_size: int | None = 32
    schedule: str = "linear"
    num_timesteps: int = 1000
    conditional: bool = False  # False: always the null class, so features cannot read the label off y
    class_dropout_prob: float = 0.1
    learn_sigma: bool = False
    checkpoint_every: int = 500
    keep_last: int = 3
    log_every: int = 10
    curriculum_every: int = 50
    curriculum_bins: int = 50
    loss_bins: int = 10
    out: str = "runs/run"
    resume: bool = False
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto (bf16 autocast on cuda) | fp32 | bf16 (on the CPU too): aselect_core.precision
    compile: bool = False  # torch.compile the blocks (aselect_core.model.compile): faster steps, same trajectory

    def __post_init__(self) -> None:
        positive = ("steps", "batch_size", "checkpoint_every", "keep_last", "log_every", "curriculum_every",
                    "curriculum_bins", "loss_bins", "num_timesteps")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"config field {name!r}: expected a positive integer, got {value!r}")
        if not self.lr > 0:
            raise ConfigError(f"config field 'lr': expected a positive float, got {self.lr!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"config field 'ema_decay': expected a float in [0, 1), got {self.ema_decay!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"config field 'device': expected one of auto, cpu, cuda, got {self.device!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"config field 'precision': expected one of {', '.join(PRECISIONS)}, "
                              f"got {self.precision!r}")
        for name in ("compile", "ema_warmup"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"config field {name!r}: expected true or false, got {getattr(self, name)!r}")
        if not self.conditional and self.class_dropout_prob <= 0:
            raise ConfigError("config field 'class_dropout_prob': an unconditional run needs > 0 (the null-class row)")
        self._check_objective()
        if SELECTOR_FROM in self.policy_kwargs and self.policy != "learned":
            raise ConfigError(f"config field 'policy_kwargs.{SELECTOR_FROM}': only the learned policy has a selector "
                              f"to start from, got policy {self.policy!r}")

    def _check_objective(self) -> None:
        """The objective exists, and the policy and conditioning are ones it can train with."""
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"config field 'objective': expected one of {', '.join(OBJECTIVES)}, "
                              f"got {self.objective!r}")
        objective = OBJECTIVES[self.objective]
        if objective.policy is not None and (self.policy, self.policy_kwargs) != objective.policy:
            name, kwargs = objective.policy
            raise ConfigError(f"config field 'policy': objective {self.objective!r} has no choice of timestep; "
                              f"expected policy {name!r} with policy_kwargs {kwargs}, got {self.policy!r} "
                              f"with {self.policy_kwargs}")
        if self.conditional and not objective.conditional:
            raise ConfigError(f"config field 'conditional': objective {self.objective!r} reads no labels; "
                              "expected false")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        """Hash of the fields that define the run's trajectory (not where it lives or whether it resumed)."""
        d = {k: v for k, v in self.to_dict().items() if k not in ("out", "resume", "device", "steps", "compile")}
        d = {k: v for k, v in d.items() if HASHED_WHEN_SET.get(k, object()) != v}  # older runs keep their hash
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown field {unknown[0]!r}; expected one of {sorted(known)}")
        return cls(**d)

    @classmethod
    def recorded(cls, d: dict[str, Any], source: str) -> "TrainConfig":
        """A run's own config.json: a field it predates takes the value it trained with (RECORDED_BEFORE), not
        today's default, so the run keeps its hash and resumes as it trained."""
        return cls.from_dict({**RECORDED_BEFORE, **d}, source=source)

    @classmethod
    def from_file(cls, path: str | Path) -> "TrainConfig":
        """Read a YAML or JSON file (JSON is YAML) into a config."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            d = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML/JSON ({str(e).splitlines()[0]})") from None
        if not isinstance(d, dict):
            raise ConfigError(f"{path}: expected a mapping of config fields, got {type(d).__name__}")
        return cls.from_dict(d, source=str(path))
