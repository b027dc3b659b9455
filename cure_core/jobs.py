"""Long work run in a background thread with progress, result, error and cancellation.

The app keeps one :class:`BackgroundJob` per piece of work (training the default models, say)
so that the page keeps answering and several browser sessions share one run instead of
starting their own.
"""

from __future__ import annotations

import threading
import time
import traceback
import weakref
from collections.abc import Callable
from typing import Any

from cure_core.errors import CureError
from cure_core.progress import ProgressFn


class JobCancelled(CureError):
    def __init__(self) -> None:
        super().__init__("the run was cancelled", "start it again when you want it")


_LIVE_JOBS: weakref.WeakSet[BackgroundJob] = weakref.WeakSet()


def cancel_all(timeout: float = 30.0) -> None:
    """Cancel every running job and wait for each to stop (used at shutdown and by tests)."""
    for job in list(_LIVE_JOBS):
        job.cancel()
    for job in list(_LIVE_JOBS):
        job.join(timeout)


class BackgroundJob:
    """Runs ``work(progress)`` once in a daemon thread; ``progress(done, total, info)`` updates state."""

    def __init__(self, name: str, work: Callable[[ProgressFn], Any]) -> None:
        self.name = name
        self._work = work
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self.done_steps, self.total_steps, self.info = 0, 0, {}
        self.result: Any = None
        self.error: str | None = None
        self.started_at = time.time()
        self.finished = False
        self._thread = threading.Thread(target=self._run, name=f"cure-{name}", daemon=True)
        _LIVE_JOBS.add(self)
        self._thread.start()

    @property
    def fraction(self) -> float:
        with self._lock:
            return self.done_steps / self.total_steps if self.total_steps else 0.0

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def cancel(self) -> None:
        """Ask the work to stop at its next progress report."""
        self._cancel.set()

    def _progress(self, done: int, total: int, info: dict[str, Any]) -> None:
        if self._cancel.is_set():
            raise JobCancelled()
        with self._lock:
            self.done_steps, self.total_steps, self.info = done, total, dict(info)

    def _run(self) -> None:
        try:
            self.result = self._work(self._progress)
        except CureError as err:
            self.error = str(err)
        except Exception as err:  # shown in the page rather than dying silently in the thread
            self.error = f"{type(err).__name__}: {err}"
            traceback.print_exc()
        finally:
            self.finished = True
