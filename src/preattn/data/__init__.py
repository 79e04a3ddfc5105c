"""Data sets read from local files (never downloaded) and a generated one."""

from .errors import DatasetError
from .registry import DATASETS, DataSplits, build_datasets
from .synthetic import SyntheticShapes

__all__ = ["DATASETS", "DataSplits", "DatasetError", "SyntheticShapes", "build_datasets"]
