"""One dataset with its samples, recipe and cached models: what the CLI and the app work on.

Models are cached under ``cache/models/<key>/`` where the key hashes everything that decides
the weights (data hash, split, recipe, role, request). ``Original`` trains on every training
sample of the non-holdout users; ``Retrain`` on a request's retain set only — the exact
unlearning reference. Both stop by the same rule (epochs and validation patience, never wall
time). A missing model is trained on first use; a corrupt one, or one that an earlier version's
wall-clock budget cut short, is retrained with a warning.

With a user's checkpoint (``source.model``, see :mod:`cure_core.model_source`) nothing is
trained: Original is the checkpoint, Retrain the user's Retrain when one was given.
"""

from __future__ import annotations

import shutil
import time
import warnings
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from cure_core.cache import cache_dir, entry_lock
from cure_core.cache_keys import cache_key
from cure_core.data import RatingsDataset, Samples, SplitConfig, build_samples, load_dataset, summarize
from cure_core.errors import CureError
from cure_core.metrics import utility
from cure_core.model.card import Metrics, ModelCard
from cure_core.model.recipe import Recipe
from cure_core.model.recommender import Recommender
from cure_core.model.store import CorruptModelError, load_item_model, save_recommender
from cure_core.model.text_recipe import TextRecipe
from cure_core.model.text_store import load_text_model, save_text_model
from cure_core.model.text_train import train_text_model
from cure_core.model.train import TrainSets, stop_reason, train_item_model
from cure_core.model.user_model import check_reference, load_user_model
from cure_core.model.workers import available_cores, train_in_parallel, worker_threads
from cure_core.model_source import MissingRetrainError, ModelSource
from cure_core.progress import ProgressFn
from cure_core.requests import (
    ForgetRequest,
    RequestSets,
    request_saved,
    request_sets,
    save_request,
    trainable_users,
    user_request,
)

Role = Literal["original", "retrain"]
TRAINED_HERE = {"item": "Item model (trained here)", "text": "Text model (trained here)"}
"""The names of the models trained here, by recipe (the app's picker shows the same)."""


class Workspace:
    """Lazily loaded dataset + samples, and the Original/Retrain models for its requests."""

    def __init__(
        self,
        data: str | Path | None = None,
        split: SplitConfig | None = None,
        recipe: Recipe | TextRecipe | None = None,
        dataset: RatingsDataset | None = None,
        source: ModelSource | None = None,
    ) -> None:
        """``data``: a path or ``None`` for MovieLens-100K; ``dataset``: data already in memory;
        ``recipe``: the item model's (default) or the text model's (:class:`TextRecipe`);
        ``source``: a user's checkpoint to work on instead of a model trained here."""
        self.data_source = None if data is None else str(data)
        self.split = split or SplitConfig()
        self.recipe = recipe or Recipe()
        self.source = source or ModelSource()
        self._user_models: dict[str, Recommender] = {}
        self._given_dataset = dataset  # in-memory data cannot be handed to worker processes
        if dataset is not None:
            self.__dict__["dataset"] = dataset

    @cached_property
    def dataset(self) -> RatingsDataset:
        return load_dataset(self.data_source)

    @cached_property
    def samples(self) -> Samples:
        return build_samples(self.dataset, self.split)

    @cached_property
    def titles(self) -> dict[str, str]:
        return self.dataset.titles()

    @property
    def text_recipe(self) -> bool:
        """Whether the models trained here are the text-mode recommender (``--recipe text``)."""
        return isinstance(self.recipe, TextRecipe)

    def with_recipe(self, recipe: Recipe | TextRecipe) -> Workspace:
        """The same data and split (loaded samples shared, not rebuilt) with another recipe."""
        if recipe == self.recipe:
            return self
        other = Workspace(
            data=self.data_source, split=self.split, recipe=recipe, dataset=self._given_dataset, source=self.source
        )
        other.__dict__.update({k: self.__dict__[k] for k in ("dataset", "samples", "titles") if k in self.__dict__})
        return other

    def summary(self) -> dict[str, object]:
        return summarize(self.dataset, self.samples)

    # --- requests -------------------------------------------------------------------------

    def default_request(self) -> ForgetRequest:
        """5% of users, seed 0 — saved once, so it can be named by id (a request's id is the hash
        of its content, so a saved one is never stale)."""
        request = user_request(self.dataset, self.samples, fraction=0.05, seed=0)
        if not request_saved(request.id):
            save_request(request)
        return request

    def sets(self, request: ForgetRequest) -> RequestSets:
        if request.data_hash != self.dataset.content_hash:
            raise CureError(
                f"request {request.id} was made for other data (hash {request.data_hash})",
                f"create a request on this dataset ({self.dataset.name}) with `cure forget`",
            )
        return request_sets(request, self.samples)

    # --- models ---------------------------------------------------------------------------

    def train_sets(self, role: Role, request: ForgetRequest | None = None) -> TrainSets:
        samples = self.samples
        known = trainable_users(samples)
        if role == "original":
            return TrainSets(
                samples.index(Samples.TRAIN), samples.index(Samples.VALID), samples.index(Samples.TEST), known
            )
        if request is None:
            raise ValueError("Retrain needs a request")
        sets = self.sets(request)
        return TrainSets(sets.retain, sets.valid, sets.test, np.setdiff1d(known, sets.forget_users))

    def model_dir(self, role: Role, request: ForgetRequest | None = None) -> Path:
        spec = {
            "data": self.dataset.content_hash,
            "split": self.split.model_dump(),
            "recipe": self.recipe.cache_spec(),
            "role": role,
            "request": request.id if role == "retrain" and request else None,
        }
        digest = cache_key("model", spec)
        name = f"{role}-{self.dataset.name}-{digest}" if role == "original" else f"retrain-{request.id}-{digest}"  # type: ignore[union-attr]
        return cache_dir("models") / (f"text-{name}" if self.text_recipe else name)

    @property
    def model_label(self) -> str:
        """The model's name in tables and headers: a trained-here recipe's, or the checkpoint's."""
        if self.user_model:
            return self.source.label()
        return TRAINED_HERE["text" if self.text_recipe else "item"]

    @property
    def text_mode(self) -> bool:
        """Whether the models are prompted in words (a user's checkpoint or the text recipe)."""
        return self.user_model or self.text_recipe

    @property
    def user_model(self) -> bool:
        """Whether this workspace works on a user's checkpoint (nothing is trained then)."""
        return self.source.is_user_model

    def _user(self, role: Role) -> Recommender:
        """The user's Original or Retrain, loaded once per workspace."""
        if role not in self._user_models:
            rec = load_user_model(self.source, role, self.dataset, self.samples)
            if role == "retrain":
                check_reference(self._user("original"), rec)
            self._user_models[role] = rec
        return self._user_models[role]

    def _refuse_training(self) -> None:
        if self.user_model:
            raise CureError(
                f"models are trained here only for the item-token recommender, not for {self.source.label()}",
                "leave out --model to train the item model, or train your checkpoint with your own code",
            )

    def load_model(self, role: Role, request: ForgetRequest | None = None) -> Recommender | None:
        """The cached model, or ``None`` when missing. A corrupt entry, or one whose training was
        cut short (see :func:`cut_short`), is deleted with a warning, so it is retrained.
        A user's checkpoint is loaded from its folder; a missing user Retrain is ``None``."""
        if self.user_model:
            if role == "retrain" and not self.source.has_retrain:
                return None
            return self._user(role)
        folder = self.model_dir(role, request)
        if not folder.exists():
            return None
        try:
            if isinstance(self.recipe, TextRecipe):
                return load_text_model(folder, self.recipe, self.dataset, self.samples)
            rec = load_item_model(folder, self.samples)
            if cut_short(rec.card):
                raise CorruptModelError(
                    f"model {folder.name} stopped after {len(rec.card.curve or [])} of "
                    f"{rec.card.recipe.max_epochs} epochs on a wall-clock budget, so it cannot serve "  # type: ignore[union-attr]
                    f"as {role.capitalize()}",
                    "it is retrained by epochs and validation patience",
                )
        except CorruptModelError as err:
            warnings.warn(f"{err.problem}; retraining it", stacklevel=2)
            shutil.rmtree(folder, ignore_errors=True)
            return None
        return rec

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
        self._refuse_training()
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
        sets = self.train_sets(role, request)
        previous_threads = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        start = time.perf_counter()
        try:
            desc = "Original" if role == "original" else f"Retrain {request.id}"  # type: ignore[union-attr]
            if isinstance(self.recipe, TextRecipe):
                rec, curve, stopped_by = train_text_model(
                    self.dataset, self.samples, sets, self.recipe, progress, quiet, desc, position
                )
            else:
                rec, curve, stopped_by = train_item_model(
                    self.samples, sets, self.recipe, progress=progress, quiet=quiet, desc=desc, position=position
                )
        finally:
            torch.set_num_threads(previous_threads)
        seconds = time.perf_counter() - start
        best = max(curve, key=lambda row: row["valid_auc"])
        test = utility(self.samples.label[sets.test], rec.predict(self.samples, sets.test))
        card = ModelCard(
            role=role,
            request=request.id if request is not None and role == "retrain" else None,
            dataset=self.dataset.name,
            data_hash=self.dataset.content_hash,
            split=self.split,
            recipe=self.recipe,
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
        folder = self.model_dir(role, request)
        if isinstance(self.recipe, TextRecipe):  # read back through the loader every later use takes
            save_text_model(rec, folder, card)
            return load_text_model(folder, self.recipe, self.dataset, self.samples)
        save_recommender(rec, folder, self.samples, card)
        return rec

    def model(
        self, role: Role, request: ForgetRequest | None = None, progress: ProgressFn | None = None, quiet: bool = False
    ) -> Recommender:
        """Load from the cache, or train now (a user's model: load it, or refuse a missing Retrain)."""
        if self.user_model:
            rec = self.load_model(role, request)  # None only for a Retrain that was not given
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
        """Original and Retrain of ``request``; when both are missing they train side by side.

        Two processes that split the cores are faster here than one process on all of them.
        ``progress`` gets the sum of both jobs' steps. A user's model without a Retrain raises
        :class:`~cure_core.model_source.MissingRetrainError` (see :meth:`reference_models`).
        """
        if self.user_model:
            return self.model("original"), self.model("retrain", request)
        models: dict[Role, Recommender | None] = {
            "original": self.load_model("original"),
            "retrain": self.load_model("retrain", request),
        }
        missing = [role for role, model in models.items() if model is None]
        cores = min(torch.get_num_threads(), available_cores())
        if len(missing) == 2 and cores > 1 and self._given_dataset is None:
            train_in_parallel(self, request, progress, quiet, threads=worker_threads(cores, workers=2))
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
        """Original and Retrain as :meth:`ensure_models`, except that a user's model given
        without a Retrain comes with ``None``: what evaluation and the pages show as unavailable."""
        if self.user_model and not self.source.has_retrain:
            return self.model("original"), None
        return self.ensure_models(request, progress=progress, quiet=quiet)


def cut_short(card: ModelCard) -> bool:
    """Whether a cached item model's curve ends before the stopping rule says it should — trained
    under the wall-clock budget of earlier versions on a busy machine. Such a model depends on
    the machine's load and must not serve as Original or Retrain."""
    recipe = card.recipe
    if (
        recipe is None
        or isinstance(recipe, TextRecipe)
        or card.curve is None
        or any("valid_auc" not in row for row in card.curve)
    ):
        raise CorruptModelError(
            "meta.json lacks the training curve or item recipe",
            "delete the folder; cached models are retrained on next use",
        )
    return stop_reason([float(row["valid_auc"]) for row in card.curve], recipe.max_epochs, recipe.patience) is None
