"""Jobs for ``run_side_by_side`` tests: module-level, so that spawned workers can import them."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from cure_core.errors import CureError
from cure_core.progress import ProgressFn

WAIT_LIMIT_S = 60.0  # how long a job waits for what a test arranges; a test far from it has failed


def count_and_write(out: Path, total: int, progress: ProgressFn) -> None:
    """Reports ``total`` steps, prints to both streams, then writes ``out``."""
    for step in range(1, total + 1):
        progress(step, total, {"job": out.stem, "step": step})
        time.sleep(0.02)
    print(f"stdout of {out.stem}", flush=True)
    print(f"stderr of {out.stem}", file=sys.stderr, flush=True)
    out.write_text(f"{out.stem}:{total}")


def write_pid(pid_file: Path) -> None:
    tmp = pid_file.with_suffix(".tmp")
    tmp.write_text(str(os.getpid()))
    tmp.replace(pid_file)


def wait_until_stopped(pid_file: Path, progress: ProgressFn) -> None:
    """Writes its pid to ``pid_file``, then reports no progress until terminated; writes
    ``<pid_file>.finished`` should it ever run out its wait."""
    write_pid(pid_file)
    deadline = time.monotonic() + WAIT_LIMIT_S
    while time.monotonic() < deadline:
        progress(0, 1, {"waiting": True})
        time.sleep(0.05)
    pid_file.with_suffix(".finished").write_text("not terminated")


def fail_with_cure_error(wait_for: Path, problem: str, fix: str, progress: ProgressFn) -> None:
    """Raises ``CureError(problem, fix)`` once ``wait_for`` exists (the other job is running)."""
    deadline = time.monotonic() + WAIT_LIMIT_S
    while not wait_for.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    raise CureError(problem, fix)


def crash(progress: ProgressFn) -> None:
    progress(0, 1, {})
    raise ValueError("bad value 7")
