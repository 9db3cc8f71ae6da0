"""Training: `TrainConfig` and `train(config) -> run dir`. `python -m aselect_core.train` is the torchrun entry."""
from aselect_core.train.config import ConfigError, TrainConfig
from aselect_core.train.loop import TrainingError, TrainingInterrupted, train
from aselect_core.train.rundir import RunDir, RunDirError

__all__ = ["ConfigError", "RunDir", "RunDirError", "TrainConfig", "TrainingError", "TrainingInterrupted", "train"]
