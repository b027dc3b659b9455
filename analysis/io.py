"""Atomic file writes, shared by the exports here and the cache of ``cure_core``.

A file is written to a temporary sibling, flushed to disk (``fsync``) and renamed over the
target, so a crash leaves either the old file or the new one, never half of one. The temporary
file is created private (0600); before the rename it gets the mode an ordinary ``open`` would
give it (0666 less the umask: 0644 under the usual umask 022), and a folder filled under a
temporary name gets 0777 less the umask, like one made by ``mkdir``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def _process_umask() -> int:
    # os.umask can only be read by setting it; done once at import, before any worker thread
    # exists, so no other thread can create a file under the temporary value
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _process_umask()


def default_mode(directory: bool = False) -> int:
    """The mode a new file (or folder) gets from ``open`` (``mkdir``) under the process umask."""
    return (0o777 if directory else 0o666) & ~_UMASK


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` to fill a temporary sibling of ``path``, sync it and rename it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda tmp: tmp.write_bytes(data))
