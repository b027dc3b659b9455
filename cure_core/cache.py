"""Location of the run-time cache and atomic writes into it (files: :mod:`analysis.io`).

Nothing in ``cache/`` is ever written in place: files are written to a temporary sibling and
renamed, folders are filled under a temporary name and renamed as a whole. A crash therefore
leaves either the old entry or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from analysis.io import atomic_write_bytes, default_mode

__all__ = ["atomic_directory", "atomic_write_bytes", "atomic_write_json", "cache_dir", "cache_root"]

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
