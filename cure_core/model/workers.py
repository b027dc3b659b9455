"""Running jobs side by side, each in a spawned worker process (Original and Retrain training).

Two processes that split the cores are faster here than one process on all of them. A job is a
picklable callable — a module-level function, or a ``functools.partial`` of one — that takes a
progress callback; its updates come back through a queue and reach the caller's ``progress``
summed over the jobs.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
import traceback
import types
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from multiprocessing.process import BaseProcess
from typing import Any

from cure_core.errors import CureError
from cure_core.progress import ProgressFn

Job = Callable[[ProgressFn], object]
"""A unit of work for :func:`run_side_by_side`: ``job(progress)``; what it returns is dropped."""

PROGRESS_INTERVAL_S = 0.25
"""How often progress is forwarded — by each worker to the queue and by the parent to ``progress``."""

_STOP_GRACE_S = 5.0  # how long a terminated worker may take to exit before it is killed
_MAIN_SWAP = threading.Lock()  # page scripts run in threads: one swap of sys.modules["__main__"] at a time


def run_side_by_side(
    jobs: Sequence[Job], progress: ProgressFn | None, quiet: bool, names: Sequence[str] | None = None
) -> None:
    """Run every job at once, each in its own spawned process, and return when all have finished.

    ``progress(done, total, info)`` receives the jobs' ``done`` and ``total`` summed and the
    first job's latest ``info``, at most every :data:`PROGRESS_INTERVAL_S` and once more at the
    end. A job that raises :class:`CureError` makes this raise one with the same problem and
    fix; any other exception becomes a CureError naming the job (``names[i]``, by default its
    function) and the exception's last line. On the first failure, and on any exception here
    (Ctrl-C, a cancelled Streamlit run raising from ``progress``), every worker is terminated
    and joined before the exception propagates: no worker outlives the call.

    ``quiet`` silences the workers' stdout and stderr (the jobs get ``quiet`` themselves, to
    skip their tqdm bars); otherwise their stderr is the parent's. A worker's stdout is always
    discarded, so it never mixes into what the caller prints.
    """
    names = list(names) if names is not None else [_job_name(job) for job in jobs]
    if len(names) != len(jobs):
        raise ValueError(f"{len(jobs)} jobs but {len(names)} names")
    context = multiprocessing.get_context("spawn")
    updates = context.Queue()
    workers: list[BaseProcess] = []
    try:
        with _script_main_hidden():
            for index, job in enumerate(jobs):
                worker = context.Process(target=_work, args=(index, job, updates, quiet), name=f"cure-{names[index]}")
                worker.start()
                workers.append(worker)
        _follow(workers, updates, names, progress)
    finally:
        _stop(workers)
        updates.close()


@contextmanager
def _script_main_hidden() -> Iterator[None]:
    """Hide a script ``__main__`` while workers start, so that they do not run the script again.

    A spawned worker re-imports its parent's ``__main__`` (as ``__mp_main__``) from
    ``__main__.__file__`` when that module has no ``__spec__`` name. Streamlit runs a page as
    such a module, so every worker would run the whole page — widgets, training and all —
    before its job. A stub module with neither ``__file__`` nor ``__spec__`` stands in while the
    processes start (spawn reads ``__main__`` only then) and the real one is put back after;
    jobs therefore must live in importable modules, never in the script itself.
    """
    with _MAIN_SWAP:
        main = sys.modules.get("__main__")
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            yield
        finally:
            if main is None:
                del sys.modules["__main__"]
            else:
                sys.modules["__main__"] = main


def _job_name(job: Job) -> str:
    func = job.func if isinstance(job, partial) else job
    return getattr(func, "__qualname__", type(func).__name__)


def _work(index: int, job: Job, updates: Any, quiet: bool) -> None:
    """A worker's body: runs ``job`` and reports its progress, then how it ended, to ``updates``.

    Messages are ``("progress", index, done, total, info)``, then one of ``("done", index)``,
    ``("cure_error", index, problem, fix)`` (strings: an exception with its own ``__init__``
    may not unpickle) or ``("crash", index, last line, traceback)``.
    Ctrl-C is left to the parent, which terminates every worker, so that a terminal's interrupt
    does not print one traceback per worker.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _redirect_output(quiet)
    last_sent = 0.0

    def report(done: int, total: int, info: dict[str, Any]) -> None:
        nonlocal last_sent
        now = time.monotonic()
        if done >= total or now - last_sent >= PROGRESS_INTERVAL_S:
            last_sent = now
            updates.put(("progress", index, int(done), int(total), dict(info)))

    try:
        job(report)
    except CureError as error:
        updates.put(("cure_error", index, str(error.problem), str(error.fix)))
    except Exception as error:
        trace = traceback.format_exc()
        print(trace, file=sys.stderr, flush=True)
        updates.put(("crash", index, traceback.format_exception_only(type(error), error)[-1].strip(), trace))
    else:
        updates.put(("done", index))


def _redirect_output(quiet: bool) -> None:
    """Send the worker's stdout (and stderr when ``quiet``) to the null device, at the file
    descriptors too, so that C-level writes are silenced as well as Python's."""
    null = os.open(os.devnull, os.O_WRONLY)
    streams = [(sys.stdout, 1)] + ([(sys.stderr, 2)] if quiet else [])
    for stream, fd in streams:
        if stream is not None:
            stream.flush()
        os.dup2(null, fd)
    os.close(null)


class _RemoteTraceback(Exception):
    """A worker's traceback, chained to the CureError that reports its failure."""

    def __str__(self) -> str:
        return str(self.args[0])


def _follow(workers: list[BaseProcess], updates: Any, names: list[str], progress: ProgressFn | None) -> None:
    """Read ``updates`` until every worker has finished, forwarding progress; raise on the first failure."""
    counts = [(0, 0)] * len(workers)
    infos: list[dict[str, Any]] = [{} for _ in workers]
    finished: set[int] = set()
    last_call = 0.0

    def forward(force: bool) -> None:
        nonlocal last_call
        now = time.monotonic()
        if progress is not None and (force or now - last_call >= PROGRESS_INTERVAL_S):
            last_call = now
            progress(sum(d for d, _ in counts), sum(t for _, t in counts), infos[0])

    while len(finished) < len(workers):
        try:
            message = updates.get(timeout=PROGRESS_INTERVAL_S)
        except queue.Empty:
            _check_alive(workers, finished, names, updates)
            continue
        kind, index = message[0], message[1]
        if kind == "progress":
            counts[index], infos[index] = (message[2], message[3]), message[4]
            forward(force=False)
        elif kind == "done":
            finished.add(index)
        elif kind == "cure_error":
            raise CureError(message[2], message[3])
        else:
            raise CureError(
                f"{names[index]} failed in its worker process: {message[2]}",
                "this is a bug rather than bad input; the worker's traceback is chained to this error "
                "and printed on stderr unless quiet",
            ) from _RemoteTraceback(message[3])
    forward(force=True)


def _check_alive(workers: list[BaseProcess], finished: set[int], names: list[str], updates: Any) -> None:
    """Raise if a worker exited without reporting how it ended (killed, out of memory, crashed in C).

    A worker's queue writes reach the pipe before it exits, so once it is seen dead an empty
    queue means it never reported; a non-empty one is read first by the caller.
    """
    for index, worker in enumerate(workers):
        if index not in finished and not worker.is_alive() and updates.empty():
            raise CureError(
                f"{names[index]} stopped without finishing (worker exit code {worker.exitcode})",
                "check that the machine has memory to spare for every worker, then run it again",
            )


def _stop(workers: list[BaseProcess]) -> None:
    """Terminate the workers still running (SIGTERM, then SIGKILL after a grace period) and join all."""
    for worker in workers:
        if worker.is_alive():
            worker.terminate()
    for worker in workers:
        worker.join(_STOP_GRACE_S)
        if worker.is_alive():
            worker.kill()
            worker.join()
        worker.close()


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's total)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def worker_threads(cores: int, workers: int) -> int:
    """Torch threads per worker so that ``workers`` processes together never oversubscribe
    ``cores`` (two 2-thread trainings on 2 cores ran an epoch 10x slower than one alone)."""
    return max(1, cores // workers)
