"""Original and Retrain of a request, through the backend of the model's kind.

Models trained here are cached under ``cache/models/<key>/`` where the key hashes everything
that decides the weights (data hash, split, recipe, role, request). ``Original`` trains on every
training sample of the non-holdout users; ``Retrain`` on a request's retain set only — the exact
unlearning reference. Both stop by the same rule (epochs or checks and validation patience,
never wall time). A missing model is trained on first use; a corrupt one, or one that an
earlier version's wall-clock budget cut short, is retrained with a warning.

A backend that does not train here (a user's checkpoint) gives its models instead: Original is
the checkpoint, Retrain the user's Retrain when one was given.
"""

from __future__ import annotations

import shutil
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import torch

from cure_core.cache import cache_dir, entry_lock
from cure_core.cache_keys import cache_key
from cure_core.data import Samples, SplitConfig
from cure_core.errors import CureError
from cure_core.metrics import utility
from cure_core.model.backends import ModelBackend, Role, backend_for
from cure_core.model.card import Metrics, ModelCard
from cure_core.model.recipe import Recipe, TextRecipe
from cure_core.model.recommender import Recommender
from cure_core.model.store import CorruptModelError
from cure_core.model.training import TrainSets, train
from cure_core.model.workers import available_cores, run_side_by_side, worker_threads
from cure_core.model_source import MissingRetrainError
from cure_core.progress import ProgressFn
from cure_core.requests import ForgetRequest, trainable_users
from cure_core.study_data import StudyData


class ModelRepository:
    """The models of ``backend`` on ``data``: loaded from the cache or the user's folders,
    trained when missing (models trained here)."""

    def __init__(self, data: StudyData, backend: ModelBackend) -> None:
        self.data = data
        self.backend = backend
        self._given: dict[Role, Recommender] = {}

    def with_recipe(self, recipe: Recipe | TextRecipe) -> ModelRepository:
        """The same data (loaded samples shared) with the models of another recipe."""
        if recipe == self.backend.recipe:
            return self
        return ModelRepository(self.data, backend_for(recipe))

    @property
    def label(self) -> str:
        return self.backend.label

    def train_sets(self, role: Role, request: ForgetRequest | None = None) -> TrainSets:
        samples = self.data.samples
        known = trainable_users(samples)
        if role == "original":
            return TrainSets(
                samples.index(Samples.TRAIN), samples.index(Samples.VALID), samples.index(Samples.TEST), known
            )
        if request is None:
            raise ValueError("Retrain needs a request")
        sets = self.data.sets(request)
        return TrainSets(sets.retain, sets.valid, sets.test, np.setdiff1d(known, sets.forget_users))

    def model_dir(self, role: Role, request: ForgetRequest | None = None) -> Path:
        data = self.data
        spec = {
            "data": data.dataset.content_hash,
            "split": data.split.model_dump(),
            "recipe": self.backend.recipe.cache_spec(),  # type: ignore[union-attr]
            "role": role,
            "request": request.id if role == "retrain" and request else None,
        }
        digest = cache_key("model", spec)
        name = f"{role}-{data.dataset.name}-{digest}" if role == "original" else f"retrain-{request.id}-{digest}"  # type: ignore[union-attr]
        return cache_dir("models") / f"{self.backend.folder_prefix}{name}"

    def _given_model(self, role: Role) -> Recommender | None:
        """The user's Original or Retrain (checked against Original), loaded once."""
        if role not in self._given:
            rec = self.backend.given(role, self.data.dataset, self.data.samples)
            if rec is None:
                return None
            if role == "retrain":
                self.backend.check_reference(self._given_model("original"), rec)  # type: ignore[arg-type]
            self._given[role] = rec
        return self._given[role]

    def load_model(self, role: Role, request: ForgetRequest | None = None) -> Recommender | None:
        """The cached model, or ``None`` when missing. A corrupt entry, or one whose training was
        cut short, is deleted with a warning, so it is retrained. A user's model is loaded from
        its folder; a missing user Retrain is ``None``."""
        if not self.backend.capabilities.trains_here:
            return self._given_model(role)
        folder = self.model_dir(role, request)
        if not folder.exists():
            return None
        try:
            return self.backend.load(folder, self.data.dataset, self.data.samples)
        except CorruptModelError as err:
            warnings.warn(f"{err.problem}; retraining it", stacklevel=2)
            shutil.rmtree(folder, ignore_errors=True)
            return None

    def train_model(
        self,
        role: Role,
        request: ForgetRequest | None = None,
        progress: ProgressFn | None = None,
        threads: int | None = None,
        quiet: bool = False,
        position: int | None = None,
        force: bool = False,
    ) -> Recommender:
        """Train and cache one model (Original, or Retrain of ``request``) on ``threads`` torch
        threads (1 to the available cores; ``None``: torch's current setting).

        One build per cache entry across threads and processes (:func:`entry_lock`): a caller
        that finds the model being trained waits and gets the cached result, unless ``force``."""
        if not self.backend.capabilities.trains_here:
            raise self.backend.not_trained_here()
        cores = available_cores()
        if threads is not None and not 1 <= threads <= cores:
            raise CureError(
                f"--threads {threads} is outside 1..{cores} (the cores available here)",
                f"give --threads between 1 and {cores}, or leave it out to use torch's default",
            )
        with entry_lock(self.model_dir(role, request)):
            cached = None if force else self.load_model(role, request)
            return cached or self._train(role, request, progress, threads, quiet, position)

    def _train(
        self,
        role: Role,
        request: ForgetRequest | None,
        progress: ProgressFn | None,
        threads: int | None,
        quiet: bool,
        position: int | None,
    ) -> Recommender:
        data, backend = self.data, self.backend
        sets = self.train_sets(role, request)
        previous_threads = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        start = time.perf_counter()
        try:
            desc = "Original" if role == "original" else f"Retrain {request.id}"  # type: ignore[union-attr]
            plan = backend.training_plan(data.dataset, data.samples, sets)
            rec, curve, stopped_by = train(plan, progress, quiet, desc, position)
        finally:
            torch.set_num_threads(previous_threads)
        seconds = time.perf_counter() - start
        best = max(curve, key=lambda row: row["valid_auc"])
        test = utility(data.samples.label[sets.test], rec.predict(data.samples, sets.test))
        card = ModelCard(
            role=role,
            request=request.id if request is not None and role == "retrain" else None,
            dataset=data.dataset.name,
            data_hash=data.dataset.content_hash,
            split=data.split,
            recipe=backend.recipe,
            train_samples=len(sets.train),
            n_params=int(sum(p.numel() for p in rec.model.parameters())),
            train_seconds=round(seconds, 1),
            threads=threads or previous_threads,
            best_epoch=best["epoch"],
            stopped_by=stopped_by,
            curve=curve,
            metrics=Metrics(
                valid_auc=best["valid_auc"], test_auc=test["auc"], test_acc=test["acc"], test_logloss=test["logloss"]
            ),
            torch=torch.__version__,
        )
        return backend.save(rec, self.model_dir(role, request), data.dataset, data.samples, card)

    def model(
        self, role: Role, request: ForgetRequest | None = None, progress: ProgressFn | None = None, quiet: bool = False
    ) -> Recommender:
        """Load from the cache, or train now (a user's model: load it, or refuse a missing Retrain)."""
        if not self.backend.capabilities.trains_here:
            rec = self.load_model(role, request)
            if rec is None:
                raise MissingRetrainError()
            return rec
        return self.load_model(role, request) or self.train_model(role, request, progress=progress, quiet=quiet)

    def original(self, progress: ProgressFn | None = None, quiet: bool = False) -> Recommender:
        return self.model("original", progress=progress, quiet=quiet)

    def retrain(self, request: ForgetRequest, progress: ProgressFn | None = None, quiet: bool = False) -> Recommender:
        return self.model("retrain", request, progress=progress, quiet=quiet)

    def ensure_models(
        self, request: ForgetRequest, progress: ProgressFn | None = None, quiet: bool = False
    ) -> tuple[Recommender, Recommender]:
        """Original and Retrain of ``request``; when both are missing they train side by side,
        in two spawned processes that split the cores (faster here than one process on all of
        them; data given in memory trains here, one model after the other). ``progress`` gets the
        sum of both jobs' steps. A user's model without a Retrain raises
        :class:`~cure_core.model_source.MissingRetrainError` (see :meth:`reference_models`)."""
        if not self.backend.capabilities.trains_here:
            return self.model("original"), self.model("retrain", request)
        models: dict[Role, Recommender | None] = {
            "original": self.load_model("original"),
            "retrain": self.load_model("retrain", request),
        }
        missing = [role for role, model in models.items() if model is None]
        cores = min(torch.get_num_threads(), available_cores())
        if len(missing) == 2 and cores > 1 and not self.data.in_memory:
            threads = worker_threads(cores, workers=2)
            jobs = [
                partial(
                    _train_in_worker, self.data.source, self.data.split, self.backend, role, request, threads, quiet
                )
                for role in missing
            ]
            run_side_by_side(jobs, progress, quiet, names=["Original", "Retrain"])
            models = {"original": self.model("original"), "retrain": self.model("retrain", request)}
        else:
            for role in missing:
                models[role] = self.train_model(
                    role, request if role == "retrain" else None, progress=progress, quiet=quiet
                )
        return models["original"], models["retrain"]  # type: ignore[return-value]

    def reference_models(
        self, request: ForgetRequest, progress: ProgressFn | None = None, quiet: bool = False
    ) -> tuple[Recommender, Recommender | None]:
        """Original and Retrain as :meth:`ensure_models`, except that a model given without a
        Retrain comes with ``None``: what evaluation and the pages show as unavailable."""
        if not self.backend.capabilities.has_retrain:
            return self.model("original"), None
        return self.ensure_models(request, progress=progress, quiet=quiet)


def _train_in_worker(
    source: str | None,
    split: SplitConfig,
    backend: ModelBackend,
    role: Role,
    request: ForgetRequest,
    threads: int,
    quiet: bool,
    progress: ProgressFn,
) -> None:
    """One model of :meth:`ModelRepository.ensure_models`, trained and cached in a worker process."""
    models = ModelRepository(StudyData(source, split), backend)
    models.train_model(role, request if role == "retrain" else None, progress, threads, quiet)
