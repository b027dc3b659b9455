"""What every kind of model offers: one :class:`ModelBackend` per kind, asked for capabilities.

A backend holds what decides its models (a recipe, or the user's checkpoint options) and does
what differs between kinds: training (batches and loss for the one loop of
:mod:`cure_core.model.training`), saving and loading, the corrupted prompts of circuit
discovery, the TransformerLens bridge and the names shown to users. Everything else asks it for
:class:`Capabilities`, never for its kind. LoRA or full parameters is a property of an
unlearning run, not of the backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from cure_core.errors import CureError

if TYPE_CHECKING:
    import torch

    from cure_core.data import RatingsDataset, Samples
    from cure_core.model.card import ModelCard
    from cure_core.model.recipe import Recipe, TextRecipe
    from cure_core.model.recommender import Recommender
    from cure_core.model.training import TrainingPlan, TrainSets
    from cure_core.model_source import ModelSource
    from cure_core.requests import ForgetRequest
    from cure_core.text_corruptions import PromptBatches

Role = Literal["original", "retrain"]


@dataclass(frozen=True)
class Capabilities:
    """What a kind of model can do, which is all that commands, pages and studies ask about.

    - ``trains_here``: Original and Retrain are trained and cached here from a recipe (else
      they are the user's, loaded from their folders and never written).
    - ``has_retrain``: a Retrain reference exists (trained here, or given with the checkpoint).
    - ``embedding_rows``: users and items have embedding rows of their own (item tokens), which
      CURE can group and reset; words' token embeddings are shared by every user.
    - ``costly_scoring``: a prompt costs a forward pass of ~100 tokens, so evaluations score
      seeded draws of the large sets (:data:`cure_core.evaluate.TEXT_EVAL_PROMPTS`).
    - ``score_batch``: prompts per scoring batch.
    """

    trains_here: bool
    has_retrain: bool
    embedding_rows: bool
    costly_scoring: bool
    score_batch: int


@dataclass(frozen=True)
class Corruption:
    """What circuit discovery asks to corrupt: samples ``idx`` of ``request`` under the
    corruption ``name``, drawn with ``rng``, in batches of ``size``; ``weight`` gives the
    metric's weight of the samples kept."""

    name: str
    samples: Samples
    idx: np.ndarray
    request: ForgetRequest
    rng: np.random.Generator
    weight: Callable[[np.ndarray], torch.Tensor]
    size: int


class ModelBackend(ABC):
    """One kind of model. Subclasses give the data to :meth:`__init__` and fill in the hooks
    that differ; the defaults refuse what a kind cannot do."""

    folder_prefix = ""
    """Prefix of this kind's cache folders under ``cache/models/``."""
    recipe_flags: tuple[str, ...] = ()
    """The command-line options that choose this model beside ``--recipe-json`` (a study's
    reproducing command)."""

    def __init__(
        self,
        label: str,
        description: str,
        capabilities: Capabilities,
        recipe: Recipe | TextRecipe | None = None,
        source: ModelSource | None = None,
    ) -> None:
        """``label``: the model's name in tables and headers; ``description``: one line naming
        it on pages; ``recipe``: of the models trained here (``None``: nothing is trained here);
        ``source``: the user's checkpoint options (empty for the models trained here)."""
        from cure_core.model_source import ModelSource

        self.label = label
        self.description = description
        self.capabilities = capabilities
        self.recipe = recipe
        self.source = source or ModelSource()

    # --- models trained here ----------------------------------------------------------------

    def training_plan(self, dataset: RatingsDataset, samples: Samples, sets: TrainSets) -> TrainingPlan:
        """A fresh model and how to train it (seeded by the recipe)."""
        raise self.not_trained_here()

    def save(
        self, rec: Recommender, folder: Path, dataset: RatingsDataset, samples: Samples, card: ModelCard
    ) -> Recommender:
        """Write a model trained here into its cache folder (atomically); returns the model as
        every later use will see it (its card and path set)."""
        raise self.not_trained_here()

    def load(self, folder: Path, dataset: RatingsDataset, samples: Samples) -> Recommender:
        """A cache folder written by :meth:`save`; anything unreadable is a
        :class:`~cure_core.model.store.CorruptModelError` (the caller retrains it)."""
        raise self.not_trained_here()

    def not_trained_here(self) -> CureError:
        """The error of asking this kind to train, save or load a model trained here."""
        return CureError(
            f"models are trained here only for the models of a recipe, not for {self.label}",
            "leave out --model to train the item model, or train your checkpoint with your own code",
        )

    # --- a user's models ----------------------------------------------------------------------

    def given(self, role: Role, dataset: RatingsDataset, samples: Samples) -> Recommender | None:
        """The user's Original or Retrain (``None``: no Retrain was given)."""
        raise NotImplementedError(f"{self.label} is trained here, not given")

    def check_reference(self, original: Recommender, retrain: Recommender) -> None:
        """Refuse a given Retrain that is not the same kind of model as ``original``."""
        raise NotImplementedError(f"{self.label} is trained here, not given")

    # --- unlearning runs ----------------------------------------------------------------------

    @abstractmethod
    def save_run_model(self, rec: Recommender, folder: Path, samples: Samples, card: ModelCard) -> None:
        """Write a run's unlearned model (all its weights) into ``folder``."""

    @abstractmethod
    def load_run_model(self, folder: Path, dataset: RatingsDataset, samples: Samples) -> Recommender:
        """A run's unlearned model as :meth:`save_run_model` wrote it."""

    def saved_fields(self, rec: Recommender, folder: Path) -> dict[str, Any]:
        """What the card of a folder a run saved in ``folder`` records of ``rec`` (see
        :func:`~cure_core.model.checkpoint_model.saved_fields`): no checkpoint, no profile."""
        from cure_core.model.checkpoint_model import saved_fields

        return saved_fields(folder, None, None)

    # --- circuits -----------------------------------------------------------------------------

    @abstractmethod
    def check_corruption(self, name: str) -> None:
        """Refuse corruption ``name`` before any work when this kind's prompts cannot take it."""

    @abstractmethod
    def corrupted_batches(self, rec: Recommender, asked: Corruption) -> PromptBatches:
        """Clean/corrupted prompt pairs of what is ``asked``, in batches; see
        :func:`cure_core.circuits.prompt_batches`."""

    @abstractmethod
    def bridge(self, rec: Recommender, device: str | None) -> Any:
        """``rec`` as a TransformerLens ``TransformerBridge`` running the weights it scores with."""
