"""What one command or page works on: the data (:class:`~cure_core.study_data.StudyData`) and
the model repository of the chosen kind (:class:`~cure_core.model.repository.ModelRepository`),
built once at the entry point from the user's choices."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cure_core.data import RatingsDataset, SplitConfig
from cure_core.model.backends import backend_for
from cure_core.model.recipe import Recipe, TextRecipe
from cure_core.model.repository import ModelRepository
from cure_core.model_source import ModelSource
from cure_core.study_data import StudyData


@dataclass(frozen=True)
class Workspace:
    """The data and the models on it (``models.data`` is ``data``)."""

    data: StudyData
    models: ModelRepository

    @classmethod
    def open(
        cls,
        data: str | Path | None = None,
        split: SplitConfig | None = None,
        recipe: Recipe | TextRecipe | None = None,
        source: ModelSource | None = None,
        dataset: RatingsDataset | None = None,
    ) -> Workspace:
        """``data``: a path or ``None`` for MovieLens-100K; ``dataset``: data already in memory;
        ``recipe``: the models trained here (default: the item model's); ``source``: a user's
        checkpoint to work on instead (its backend then gives the models)."""
        study_data = StudyData(data, split, dataset)
        return cls(study_data, ModelRepository(study_data, backend_for(recipe, source)))

    def with_recipe(self, recipe: Recipe | TextRecipe) -> Workspace:
        """The same data (loaded samples shared) with the models of another recipe."""
        models = self.models.with_recipe(recipe)
        return self if models is self.models else Workspace(self.data, models)
