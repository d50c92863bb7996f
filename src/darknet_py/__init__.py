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

__version__ = "0.1.0"

__all__ = [
    "CfgError",
    "DarknetError",
    "DarknetIOError",
    "DataError",
    "ShapeError",
    "StateError",
    "WeightsError",
    "__version__",
]
