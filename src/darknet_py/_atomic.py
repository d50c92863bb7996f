"""Writing a file so that readers see the old one or the complete new one, never a part."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def replacing(path: Path, *, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write; when the block succeeds it replaces
    `path` (an atomic rename), and in any case it is gone afterwards. Errors propagate.
    `keep_suffix`: the temporary ends in `path`'s suffix too (for writers that choose the
    format by the file name, such as OpenCV's VideoWriter)."""
    tail = f".tmp{path.suffix}" if keep_suffix else ".tmp"
    temporary = path.with_name(f".{path.name}.{os.getpid()}{tail}")
    if os.path.lexists(temporary):  # left by a writer that crashed: links cannot overwrite it
        os.unlink(temporary)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if os.path.lexists(temporary):
            os.unlink(temporary)
