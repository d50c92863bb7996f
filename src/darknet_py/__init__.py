"""darknet_py: train and run darknet-format YOLO detectors in-process."""
from __future__ import annotations

from . import cfg, crowdhuman
from .anchors import AnchorResult, calc_anchors, kmeans_anchors
from .detect import Detection
from .drawing import draw_detections
from .errors import (
    CfgError,
    DarknetError,
    DarknetIOError,
    DataError,
    DistributedError,
    ExportError,
    MissingDependencyError,
    ShapeError,
    StateError,
    WeightsError,
)
from .evaluate import ClassAP, MapResult, average_precision, coco_map, compute_map, evaluate
from .onnx_export import export_onnx
from .network import (
    DarknetWarning, LayerInfo, NetParams, Network, TrainStats, bf16_backend, gpu_available, gpu_count, partial,
    precision_supported,
)
from .video import VideoFrame, annotate_video
from .train import NonFiniteLossError, TrainHistory, TrainProgress, TrainResult, learning_rate_at, train

__version__ = "0.1.0"

__all__ = [
    "AnchorResult",
    "CfgError",
    "ClassAP",
    "DarknetError",
    "DarknetIOError",
    "DarknetWarning",
    "DataError",
    "Detection",
    "DistributedError",
    "ExportError",
    "LayerInfo",
    "MapResult",
    "MissingDependencyError",
    "NonFiniteLossError",
    "NetParams",
    "Network",
    "ShapeError",
    "StateError",
    "TrainHistory",
    "TrainProgress",
    "TrainResult",
    "TrainStats",
    "VideoFrame",
    "WeightsError",
    "__version__",
    "annotate_video",
    "average_precision",
    "bf16_backend",
    "calc_anchors",
    "cfg",
    "coco_map",
    "compute_map",
    "crowdhuman",
    "draw_detections",
    "evaluate",
    "export_onnx",
    "gpu_available",
    "gpu_count",
    "kmeans_anchors",
    "learning_rate_at",
    "partial",
    "precision_supported",
    "train",
]
