"""The text model's cache folder: a Hugging Face folder that loads like a user's checkpoint.

``cache/models/text-<role>-…/`` holds what ``save_pretrained`` writes for the model and its
tokenizer (``config.json``, ``model.safetensors``, ``tokenizer.json``…) and ``meta.json``
(its :class:`~cure_core.model.card.ModelCard`: recipe, curve, metrics, ``kind: text-recipe``). It is read back by the very loader that
reads a user's checkpoint (:func:`~cure_core.model.user_model.load_user_model`), with the recipe's
profile — so nothing downstream can tell it from a checkpoint a user brought, except its meta.
"""

from __future__ import annotations

from pathlib import Path

from cure_core.cache import atomic_directory
from cure_core.data.dataset import RatingsDataset
from cure_core.data.samples import Samples
from cure_core.errors import CureError
from cure_core.model.card import ModelCard, read_card, write_card
from cure_core.model.recommender import Recommender
from cure_core.model.store import WEIGHTS, CorruptModelError, file_sha256
from cure_core.model.text_recipe import TextRecipe


def save_text_model(rec: Recommender, folder: Path, card: ModelCard) -> None:
    """Write the model, its tokenizer and ``meta.json`` atomically. The card holds the weights
    file's sha256 for integrity; the model's identity is computed when it is loaded."""
    tokenizer = getattr(rec.encoder, "tokenizer", None)
    if tokenizer is None:
        raise CureError("only a text-mode model can be saved as a text model", "save item models with save_recommender")
    with atomic_directory(folder) as tmp:
        rec.model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        write_card(tmp, card.model_copy(update={"kind": "text-recipe", "file_sha256": file_sha256(tmp / WEIGHTS)}))


def load_text_model(folder: Path, recipe: TextRecipe, dataset: RatingsDataset, samples: Samples) -> Recommender:
    """A text model folder of the cache, as a text-mode Recommender; anything unreadable or
    inconsistent is a :class:`CorruptModelError` (the caller retrains it). Its card is the saved
    one, with what loading it as a checkpoint tells (its identity among them), the saved role kept."""
    from cure_core.model.user_model import load_user_model
    from cure_core.model_source import ModelSource

    try:
        saved = read_card(folder)
        if saved.kind != "text-recipe":
            raise ValueError("meta.json is not a text model's")
        if file_sha256(folder / WEIGHTS) != saved.file_sha256:
            raise ValueError("weights do not match the checksum in meta.json")
        rec = load_user_model(ModelSource(model=str(folder), profile=recipe.profile), "original", dataset, samples)
    except (OSError, ValueError, KeyError, CureError) as err:
        raise CorruptModelError(
            f"model folder {folder} is unreadable ({str(err).splitlines()[0][:160]})",
            "delete the folder; cached models are retrained on next use",
        ) from None
    rec.card = saved.filled_by(rec.card.model_copy(update={"role": saved.role, "kind": saved.kind}))
    rec.path = folder
    return rec
