"""Exceptions raised by darknet_py. Every one derives from DarknetError."""
from __future__ import annotations


class DarknetError(Exception):
    """Base class of every error darknet_py raises on bad input or state."""


class CfgError(DarknetError, ValueError):
    """A cfg file is invalid; the message names the file, line and option."""


class WeightsError(DarknetError, ValueError):
    """A .weights file is invalid, truncated or does not fit the cfg."""


class DarknetIOError(DarknetError, OSError):
    """A file cannot be opened, read or written."""


class ShapeError(DarknetError, ValueError):
    """An argument has the wrong shape, dtype or value."""


class StateError(DarknetError, RuntimeError):
    """The object cannot do this now (for example, a closed Network)."""


class DataError(DarknetError, ValueError):
    """A dataset file (.data, list, label, .names, .odgt) is invalid; names the file and line."""


class ExportError(DarknetError, ValueError):
    """The network uses something the export format cannot express; names the layer and option."""


class MissingDependencyError(DarknetError, ImportError):
    """An optional package a feature needs is not installed; the message gives the install command."""
