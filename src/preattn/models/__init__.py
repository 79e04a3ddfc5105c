"""Networks built from :class:`preattn.ResidualBlock`."""

from .config import ModelConfig
from .factory import MODELS, create_model
from .mobilenet import MobileNet, mobilenet_v2, mobilenet_v3_large, mobilenet_v3_small
from .resnet import ResNet, resnet18, resnet34, resnet50, resnet101, resnet152
from .simple import SimpleCNN

__all__ = [
    "MODELS",
    "MobileNet",
    "ModelConfig",
    "ResNet",
    "SimpleCNN",
    "create_model",
    "mobilenet_v2",
    "mobilenet_v3_large",
    "mobilenet_v3_small",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
]
