"""A user's own Hugging Face checkpoint (``--model``, with ``--adapter`` and ``--profile``):
nothing is trained or written here; Original is the checkpoint, Retrain the user's when given."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cure_core.model.backends.base import Capabilities, Role
from cure_core.model.backends.words import WordsBackend
from cure_core.model.checkpoint_model import check_reference, load_checkpoint_model
from cure_core.model_source import ModelSource

if TYPE_CHECKING:
    from cure_core.data import RatingsDataset, Samples
    from cure_core.model.recommender import Recommender


class CheckpointBackend(WordsBackend):
    """The checkpoint of ``source`` (its model folder, adapter, profile, dtype and device)."""

    def __init__(self, source: ModelSource) -> None:
        if source.model is None:
            raise ValueError("a checkpoint backend needs a source with a model")
        capabilities = Capabilities(
            trains_here=False, has_retrain=source.has_retrain, embedding_rows=False, costly_scoring=True, score_batch=64
        )
        description = f"your checkpoint {source.label()}, prompted with the {source.profile} profile"
        super().__init__(source.label(), description, capabilities, source=source)
        self.profile_name = source.profile

    def given(self, role: Role, dataset: RatingsDataset, samples: Samples) -> Recommender | None:
        if role == "retrain" and not self.source.has_retrain:
            return None
        return load_checkpoint_model(self.source, role, dataset, samples, self)

    def check_reference(self, original: Recommender, retrain: Recommender) -> None:
        check_reference(original, retrain)

    def run_model_source(self, folder: Path) -> ModelSource:
        """A run's folder is read with the checkpoint's profile, dtype and device."""
        source = self.source
        return ModelSource(model=str(folder), profile=source.profile, dtype=source.dtype, device=source.device)
