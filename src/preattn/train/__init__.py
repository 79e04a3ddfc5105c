"""Training and evaluation: config, run directories, loop, DDP, metrics and plots."""

from .build import build_data, build_model, model_arguments
from .config import TrainConfig
from .epoch_record import EpochRecord
from .evaluate import EvalResult, evaluate
from .load import LoadedModel, load_model, load_run
from .loop import TrainingDiverged, train, train_one_epoch
from .run_evaluation import RunEvaluation, evaluate_run
from .rundir import RunDir, RunError

__all__ = [
    "EpochRecord",
    "EvalResult",
    "LoadedModel",
    "RunDir",
    "RunError",
    "RunEvaluation",
    "TrainConfig",
    "TrainingDiverged",
    "build_data",
    "build_model",
    "evaluate",
    "evaluate_run",
    "load_model",
    "load_run",
    "model_arguments",
    "train",
    "train_one_epoch",
]
