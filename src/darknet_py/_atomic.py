"""Writing a file so that readers see the old one or the complete new one, never a part."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write; when the block succeeds it replaces
    `path` (an atomic rename), and in any case it is gone afterwards. Errors propagate."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if os.path.lexists(temporary):  # left by a writer that crashed: links cannot overwrite it
        os.unlink(temporary)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if os.path.lexists(temporary):
            os.unlink(temporary)
