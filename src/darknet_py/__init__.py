"""darknet_py: train and run darknet-format YOLO detectors in-process."""
from __future__ import annotations

from .errors import (
    CfgError,
    DarknetError,
    DarknetIOError,
    DataError,
    ShapeError,
    StateError,
    WeightsError,
)

from .detect import Detection
from .network import DarknetWarning, LayerInfo, NetParams, Network

__version__ = "0.1.0"

__all__ = [
    "CfgError",
    "DarknetError",
    "DarknetIOError",
    "DarknetWarning",
    "DataError",
    "Detection",
    "LayerInfo",
    "NetParams",
    "Network",
    "ShapeError",
    "StateError",
    "WeightsError",
    "__version__",
]
