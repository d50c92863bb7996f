"""Writing a file so that readers see the old one or the complete new one, never a part."""
from __future__ import annotations

import os
import re
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


_TEMPORARY = re.compile(r"^\..+\.(\d+)\.tmp$|^\.map-(\d+)-.+\.weights$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Remove the temporary files that writers killed before their rename left in `directory`
    (`.<name>.<pid>.tmp` of replacing(), `.map-<pid>-*.weights` of train's mAP runs) whose
    process no longer runs; returns what was removed. A live writer's files are left alone."""
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMPORARY.match(entry.name)
        if not match or int(match.group(1) or match.group(2)) == os.getpid():
            continue
        if not _alive(int(match.group(1) or match.group(2))):
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except OSError:
                pass
    return removed
