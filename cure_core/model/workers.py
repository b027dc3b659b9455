"""Training Original and Retrain side by side in two worker processes (``cure train`` each).

Two processes that split the cores are faster here than one process on all of them; each
worker writes its progress to a small JSON file that the parent polls.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from cure_core.errors import CureError
from cure_core.progress import ProgressFn
from cure_core.requests import ForgetRequest, save_request

if TYPE_CHECKING:
    from cure_core.workspace import Workspace


def train_in_parallel(
    ws: Workspace, request: ForgetRequest, progress: ProgressFn | None, quiet: bool, threads: int
) -> None:
    """Two ``cure train --threads <threads>`` subprocesses; progress comes back through small JSON files.

    Subprocesses (not multiprocessing) so that nothing re-imports the caller's main module —
    a Streamlit script would otherwise start again in each worker. On any error or
    cancellation both workers are terminated; cache writes are atomic, so nothing partial stays.
    """
    save_request(request)
    with tempfile.TemporaryDirectory(prefix="cure-train-") as tmp:
        workers = []
        for role in ("original", "retrain"):
            progress_file = Path(tmp) / f"{role}.json"
            cmd = [
                sys.executable,
                "-m",
                "cure_core.cli",
                "train",
                "--threads",
                str(threads),
                "--progress-file",
                str(progress_file),
                "--recipe-json",
                ws.recipe.model_dump_json(),
                "--split-json",
                ws.split.model_dump_json(),
            ]
            cmd += ["--data", ws.data_source] if ws.data_source else []
            cmd += ["--retrain", request.id] if role == "retrain" else []
            log = open(Path(tmp) / f"{role}.log", "w+")  # noqa: SIM115 - closed below, after the worker exits
            workers.append(
                (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT if quiet else None), progress_file, log)
            )
        try:
            while True:
                running = any(proc.poll() is None for proc, _, _ in workers)
                if progress is not None:
                    states = [_read_progress(f) for _, f, _ in workers]
                    progress(sum(s[0] for s in states), sum(s[1] for s in states), states[0][2])
                if not running:
                    break
                time.sleep(0.5)
        except BaseException:
            for proc, _, _ in workers:
                proc.terminate()
            raise
        finally:
            failures = []
            for proc, _, log in workers:
                proc.wait()
                log.seek(0)
                tail = log.read().strip()
                log.close()
                if proc.returncode not in (0, -15):  # -15: terminated by us on cancel
                    failures.append(f"exit {proc.returncode}: {tail.splitlines()[-1] if tail else 'no output'}")
        if failures:
            raise CureError(
                f"a training worker failed ({'; '.join(failures)})", "run `cure train` directly to see the full log"
            )


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's total)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def worker_threads(cores: int, workers: int) -> int:
    """Torch threads per worker so that ``workers`` processes together never oversubscribe
    ``cores`` (two 2-thread trainings on 2 cores ran an epoch 10x slower than one alone)."""
    return max(1, cores // workers)


def _read_progress(path: Path) -> tuple[int, int, dict]:
    try:
        state = json.loads(path.read_text())
        return int(state["done"]), int(state["total"]), state.get("info", {})
    except (OSError, ValueError, KeyError):
        return 0, 0, {}
