"""Networks built from :class:`preattn.ResidualBlock`."""

from .factory import MODELS, create_model
from .resnet import ResNet, resnet18, resnet34, resnet50, resnet101, resnet152
from .simple import SimpleCNN

__all__ = [
    "MODELS",
    "ResNet",
    "SimpleCNN",
    "create_model",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
]
