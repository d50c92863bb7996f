"""The name tables come from the engine, and every part of the package uses the same ones."""
from __future__ import annotations

from darknet_py import cfg, detect, names, network
from darknet_py._engine import ffi, lib


def test_tables_are_indexed_by_the_engines_values():
    assert names.ACTIVATIONS[lib.DN_ACT_MISH] == "mish" and names.ACTIVATIONS[lib.DN_ACT_LEAKY] == "leaky"
    assert names.NMS_KINDS[lib.DN_NMS_GREEDY] == "greedynms" and names.NMS_KINDS[lib.DN_NMS_DIOU] == "diounms"
    assert names.IOU_LOSSES[lib.DN_IOU_CIOU] == "ciou"
    assert names.LR_POLICIES[lib.DN_POLICY_STEPS] == "steps"
    assert names.LAYER_TYPES[lib.DN_LAYER_YOLO] == "yolo" and len(names.LAYER_TYPES) == 6
    assert lib.dn_name(lib.DN_NAMES_ACTIVATION, len(names.ACTIVATIONS)) == ffi.NULL
    assert lib.dn_name(99, 0) == ffi.NULL and lib.dn_name_count(-1) == 0


def test_one_table_everywhere():
    assert network.ACTIVATIONS is names.ACTIVATIONS and network.NMS_KINDS is names.NMS_KINDS
    assert cfg.NMS_KINDS is names.NMS_KINDS and cfg.IOU_LOSSES is names.IOU_LOSSES
    assert list(detect._NMS_KIND_CODES) == list(names.NMS_KINDS)
