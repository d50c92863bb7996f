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


class DistributedError(StateError):
    """Distributed training (train(distributed=True)) cannot go on: another rank failed, the
    ranks disagree (cfg, image list, batch) or MPI reported an error; names the rank at fault."""


QUOTE_CHARS = 80  # at most this many characters of a quoted value, then "..."


def quote(value: object, limit: int = QUOTE_CHARS) -> str:
    """A value from a file, safe to put in an error message: a string (or bytes) in quotes with
    every control, escape or otherwise non-printable character escaped (``'\\x1b[31m'``), other
    values by a shortened repr; at most `limit` characters of it, then ``...``."""
    if isinstance(value, (bytes, bytearray)):
        pieces = [_escape(chr(b)) if b < 0x7F else f"\\x{b:02x}" for b in value[:limit]]
        return _bounded(pieces, len(value) > limit, limit)
    if isinstance(value, str):
        return _bounded([_escape(ch) for ch in value[:limit]], len(value) > limit, limit)
    import reprlib

    shortener = reprlib.Repr()
    shortener.maxlevel, shortener.maxstring, shortener.maxother = 2, limit, limit
    text = shortener.repr(value)
    text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
    return text if len(text) <= limit else text[:limit] + "..."


def _escape(ch: str) -> str:
    if ch in "'\\":
        return "\\" + ch
    return ch if ch.isprintable() else repr(ch)[1:-1]  # \x1b, \n, \u202e ...


def _bounded(pieces: list, cut: bool, limit: int) -> str:
    out, length = [], 0
    for piece in pieces:
        if length + len(piece) > limit:
            cut = True
            break
        out.append(piece)
        length += len(piece)
    return "'" + "".join(out) + ("..." if cut else "") + "'"


class ImageError(DataError, DarknetIOError):
    """An image file is missing or cannot be decoded; the message names the file."""
