"""The names of the engine's enums (layer types, activations, NMS kinds, IoU losses, learning-rate
policies as cfg files spell them; inference precisions as Network(precision=...) takes them),
read once from the engine: indexable by the engine's value."""
from __future__ import annotations

from ._engine import ffi, lib


def _table(table: int) -> tuple[str, ...]:
    return tuple(ffi.string(lib.dn_name(table, value)).decode("ascii") for value in range(lib.dn_name_count(table)))


LAYER_TYPES = _table(lib.DN_NAMES_LAYER)
ACTIVATIONS = _table(lib.DN_NAMES_ACTIVATION)
NMS_KINDS = _table(lib.DN_NAMES_NMS_KIND)      # "default" is darknet's nms_kind absent
IOU_LOSSES = _table(lib.DN_NAMES_IOU_LOSS)
LR_POLICIES = _table(lib.DN_NAMES_POLICY)
PRECISIONS = _table(lib.DN_NAMES_PRECISION)    # of the inference forward: "fp32", "bf16"
