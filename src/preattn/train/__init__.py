"""Training and evaluation: config, loop, checkpoints, DDP, metrics and plots."""

from .config import TrainConfig
from .evaluate import EvalResult, evaluate
from .loop import build_model_for, train

__all__ = ["EvalResult", "TrainConfig", "build_model_for", "evaluate", "train"]
