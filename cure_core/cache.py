"""Location of the run-time cache and atomic writes into it (files: :mod:`analysis.io`).

Nothing in ``cache/`` is ever written in place: files are written to a temporary sibling and
renamed, folders are filled under a temporary name and renamed as a whole. A crash therefore
leaves either the old entry or the new one, never half of one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from analysis.io import atomic_write_bytes, default_mode

__all__ = ["atomic_directory", "atomic_write_bytes", "atomic_write_json", "cache_dir", "cache_root", "entry_lock"]

log = logging.getLogger(__name__)

_REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_root() -> Path:
    """The cache folder: ``$CURE_CACHE`` if set, else ``cache/`` at the repository root."""
    root = Path(os.environ.get("CURE_CACHE", _REPO_ROOT / "cache"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def cache_dir(*parts: str) -> Path:
    """A sub-folder of the cache, created on demand."""
    path = cache_root().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


@contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces ``final`` in one rename.

    An existing ``final`` is moved aside first and deleted only after the new folder is in
    place, so a failure at any point leaves the previous entry intact.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        yield tmp
        os.chmod(tmp, default_mode(directory=True))  # mkdtemp makes 0700; entries are ordinary folders
        old = None
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def entry_lock(entry: Path) -> Iterator[None]:
    """Hold the build of cache entry ``entry`` against every other thread and process.

    Atomic writes keep an entry whole, but two builders of one entry (two browser sessions, or
    the app and a ``cure`` command) would each spend the whole build. A builder takes this lock,
    then looks for the entry again before building: the second one waits and loads the first
    one's result. The lock file lies beside the entry (``.<name>.lock``) and stays; the lock is
    the operating system's, released when its holder ends, however it ends.
    """
    entry.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(entry.parent / f".{entry.name}.lock", thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("%s is being built by another process or session; waiting for it", entry.name)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
