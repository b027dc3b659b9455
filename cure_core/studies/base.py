"""The skeleton every study shares: time it, open its store, drive its progress bar, save.

A study subclasses :class:`Study` and implements :meth:`Study.compute`, which opens the store
with the context its cells depend on (``job.open``), sizes the bar (``job.bar``), computes its
cells through ``job.cell`` (so an interrupted study resumes) and returns its tables, figures and
summary lines. :meth:`Study.run` does the rest: wall time, invocations, closing the bar, saving.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import plotly.graph_objects as go

from cure_core.progress import Progress, ProgressFn
from cure_core.studies import ABOUT
from cure_core.studies.common import StudySettings, model_context
from cure_core.studies.store import StudyStore

if TYPE_CHECKING:
    from cure_core.model.recommender import Recommender
    from cure_core.requests import ForgetRequest
    from cure_core.workspace import Workspace


class StudyOutput(NamedTuple):
    tables: dict[str, list[dict[str, Any]]]
    figures: dict[str, go.Figure]
    summary: list[str]


@dataclass
class StudyJob:
    """One invocation of a study: its inputs, its store (once opened) and its progress bar."""

    name: str
    ws: Workspace
    settings: Any
    progress: ProgressFn | None = None
    quiet: bool = False
    store: StudyStore | None = None
    _bar: Progress | None = field(default=None, repr=False)

    def open(self, context: dict[str, Any]) -> StudyStore:
        """The store of this study, settings and ``context`` (data, model, request ...)."""
        self.store = StudyStore(self.name, self.settings, context)
        return self.store

    def open_on(self, request: ForgetRequest) -> tuple[Recommender, Recommender]:
        """Original and Retrain of ``request`` (trained when missing), and the store opened on
        them: the context of a study of one request."""
        original, retrain = self.ws.models.ensure_models(request, quiet=self.quiet)
        self.open({"data": self.ws.data.dataset.content_hash, **model_context(original, retrain, request=request.id)})
        return original, retrain

    def bar(self, total: int, desc: str | None = None) -> Progress:
        self._bar = Progress(total, desc or self.name, self.progress, self.quiet)
        return self._bar

    def tick(self, **info: Any) -> None:
        """One unit of work done."""
        if self._bar is not None:
            self._bar.update(1, **info)

    def cell(self, cell: str, compute: Callable[[], Any]) -> Any:
        """The saved value of ``cell``, or ``compute()`` saved (see :class:`StudyStore`)."""
        assert self.store is not None, "open the store before computing cells"
        return self.store.cell(cell, compute)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class Study(ABC):
    """One evidence study: its name, settings model and computation."""

    name: ClassVar[str]
    settings: ClassVar[type[StudySettings]]

    @property
    def about(self) -> str:
        return ABOUT[self.name]

    @abstractmethod
    def compute(self, job: StudyJob) -> StudyOutput:
        """Open the store, compute the cells and return the tables, figures and summary."""

    def command(self, ws: Workspace, settings: StudySettings) -> str:
        """The command line that reproduces this result: the recipe, the request and every
        setting that differs from the defaults (or from ``--quick``'s) spelled out."""
        backend = ws.models.backend
        parts = ["cure study", self.name, *backend.recipe_flags]
        recipe = backend.recipe
        changed = _changed(recipe.model_dump(), type(recipe)().model_dump())
        if changed:
            parts.append(f"--recipe-json '{json.dumps(changed)}'")
        if settings.quick_mode:
            parts.append("--quick")
        request = getattr(settings, "request", None)
        if request:
            parts.append(f"--request {request}")
        baseline = (settings.quick() if settings.quick_mode else type(settings)()).model_dump()
        overrides = _changed(settings.model_dump(exclude={"request"}), baseline)
        if overrides:
            parts.append(f"--settings-json '{json.dumps(overrides)}'")
        return " ".join(parts)

    def run(
        self, ws: Workspace, settings: StudySettings, progress: ProgressFn | None = None, quiet: bool = False
    ) -> dict[str, Any]:
        """Compute (resuming from saved cells) and save the result; returns it."""
        start = time.perf_counter()
        job = StudyJob(self.name, ws, settings, progress, quiet)
        try:
            output = self.compute(job)
        finally:
            job.close()
        assert job.store is not None
        return job.store.save(
            output.tables, output.figures, output.summary, time.perf_counter() - start, self.command(ws, settings)
        )


def _changed(values: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``values`` that differ from ``defaults``."""
    return {k: v for k, v in values.items() if defaults.get(k) != v}
