"""The model card: what a model folder's ``meta.json`` records, typed, and how it is read.

Every model the code works on carries one (:attr:`~cure_core.model.recommender.Recommender.card`):
a model trained here, a user's checkpoint (never written: the user's files stay theirs), a run's
unlearned model or LoRA adapter. A ``meta.json`` written before the card is read through
:func:`cure_core.legacy.card_fields`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from cure_core.checkpoints.loading import CheckpointInfo
from cure_core.data.samples import SplitConfig
from cure_core.legacy import card_fields
from cure_core.model.recipe import Recipe, TextRecipe

CARD_VERSION = 1
META = "meta.json"

ModelKind = Literal["item", "text-recipe", "checkpoint", "lora"]


class Metrics(BaseModel):
    """A model's headline numbers: a model trained here has its validation and test scores, a
    run's model the test and forget AUC of its report."""

    model_config = ConfigDict(extra="forbid")

    valid_auc: float | None = None
    test_auc: float | None = None
    test_acc: float | None = None
    test_logloss: float | None = None
    forget_auc: float | None = None


class ModelCard(BaseModel):
    """What is known of one model. Every field but ``card_version`` is optional: each kind fills
    its own, and a model only held in memory (a run's copy before it is saved) has an empty card.

    ``kind``: ``item`` (an item-token folder written here), ``text-recipe`` (the text model
    trained here), ``checkpoint`` (a Hugging Face checkpoint: a user's, or one a text-mode run
    saved), ``lora`` (a LoRA run's adapter alone).

    Two hashes with two meanings:

    - ``fingerprint`` is the model's **identity**, the one value of its weights that enters cache
      keys (run ids, study contexts, attribution folders, reference comparisons). For an item
      model it is the sha256 of its whole weights file; for a checkpoint (a user's, the text
      model trained here, a text run's folder, an adapter) it is the sampled
      :func:`~cure_core.model.checkpoint_model.fingerprint` over its files, dtype and prompt profile,
      so a 7B checkpoint is keyed in milliseconds. ``None``: a model never saved, never cached.
    - ``file_sha256`` is **integrity** only: the sha256 of every byte of the weights file this
      code wrote into the folder, checked when the folder is read back (a mismatch rebuilds it).
      Never part of a key; absent for folders this code did not write.
    """

    model_config = ConfigDict(extra="forbid")

    card_version: int = CARD_VERSION
    kind: ModelKind | None = None
    fingerprint: str | None = None
    file_sha256: str | None = None
    # a model trained here
    role: Literal["original", "retrain"] | None = None
    request: str | None = None
    dataset: str | None = None
    data_hash: str | None = None
    split: SplitConfig | None = None
    recipe: Recipe | TextRecipe | None = None
    train_samples: int | None = None
    n_params: int | None = None
    train_seconds: float | None = None
    threads: int | None = None
    best_epoch: int | float | None = None  # an epoch, or the epoch fraction of a text model's check
    stopped_by: str | None = None
    curve: list[dict[str, int | float]] | None = None  # one row per validation check
    metrics: Metrics | None = None
    torch: str | None = None
    known_users: list[str] | None = None  # user ids with their own token (item models)
    # a checkpoint
    checkpoint: CheckpointInfo | None = None
    profile: str | None = None
    # a run's model
    run: str | None = None
    method: str | None = None
    unlearned_from: CheckpointInfo | None = None
    merged_from: str | None = None

    def filled_by(self, other: ModelCard) -> ModelCard:
        """This card with every field that ``other`` sets (not ``None``) taken from ``other``."""
        taken = {name: value for name in ModelCard.model_fields if (value := getattr(other, name)) is not None}
        return self.model_copy(update=taken)


def read_card(folder: Path) -> ModelCard:
    """The card in ``folder/meta.json``; an unreadable or malformed one raises ``OSError`` or
    ``ValueError`` (pydantic's ``ValidationError`` is one)."""
    meta = json.loads((Path(folder) / META).read_text())
    if not isinstance(meta, dict):
        raise ValueError("meta.json is not a JSON object")
    if "card_version" not in meta:
        meta = card_fields(meta)
    elif meta["card_version"] != CARD_VERSION:
        raise ValueError(f"meta.json has card version {meta['card_version']}; this version reads {CARD_VERSION}")
    return ModelCard.model_validate(meta)


def write_card(folder: Path, card: ModelCard) -> None:
    """Write ``card`` as ``folder/meta.json`` (its fields that are not set are left out)."""
    fields = {name: value for name, value in card.model_dump(mode="json").items() if value is not None}
    (Path(folder) / META).write_text(json.dumps(fields, indent=2, sort_keys=True))
