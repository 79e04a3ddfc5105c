"""Training and evaluation: config, run directories, loop, DDP, metrics and plots."""

from .build import build_data, build_model_for
from .config import TrainConfig
from .evaluate import EvalResult, evaluate
from .loop import TrainingDiverged, train, train_one_epoch
from .rundir import RunDir, RunError, load_run

__all__ = [
    "EvalResult",
    "RunDir",
    "RunError",
    "TrainConfig",
    "TrainingDiverged",
    "build_data",
    "build_model_for",
    "evaluate",
    "load_run",
    "train",
    "train_one_epoch",
]
