"""Training and evaluation: config, run directories, loop, DDP, metrics and plots."""

from .build import build_data, build_model, model_arguments
from .config import TrainConfig
from .epoch_record import EpochRecord
from .eval_record import EvalRecord, EvalRecordError
from .evaluate import EvalResult, evaluate
from .load import LoadedModel, load_model, load_run
from .loop import TrainingDiverged, train, train_one_epoch
from .recipes import load_recipe, recipe_path
from .run_evaluation import RunEvaluation, evaluate_run
from .rundir import RunDir, RunError

__all__ = [
    "EpochRecord",
    "EvalRecord",
    "EvalRecordError",
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
    "load_recipe",
    "load_run",
    "model_arguments",
    "recipe_path",
    "train",
    "train_one_epoch",
]
