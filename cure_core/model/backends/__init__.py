"""The kinds of model, one backend each: :func:`backend_for` names the kind once, from what
the user chose (a recipe trained here, or a checkpoint); everything else asks the backend."""

from __future__ import annotations

from cure_core.model.backends.base import Capabilities, Corruption, ModelBackend, Role
from cure_core.model.backends.checkpoint import CheckpointBackend
from cure_core.model.backends.item import ItemBackend
from cure_core.model.backends.text import TextBackend
from cure_core.model.recipe import Recipe, TextRecipe
from cure_core.model_source import ModelSource

__all__ = [
    "TRAINED_HERE",
    "Capabilities",
    "CheckpointBackend",
    "Corruption",
    "ItemBackend",
    "ModelBackend",
    "Role",
    "TextBackend",
    "backend_for",
]


TRAINED_HERE = {"item": ItemBackend().label, "text": TextBackend().label}
"""The names of the models trained here, by recipe (the app's picker shows the same)."""


def backend_for(recipe: Recipe | TextRecipe | None = None, source: ModelSource | None = None) -> ModelBackend:
    """The backend of a user's checkpoint when ``source`` names one, else of the models trained
    here with ``recipe`` (default: the item model's default recipe)."""
    if source is not None and source.model is not None:
        return CheckpointBackend(source)
    if isinstance(recipe, TextRecipe):
        return TextBackend(recipe)
    return ItemBackend(recipe)
