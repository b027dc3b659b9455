"""The item model trained here: one token per user and per item, a recipe of :class:`Recipe`.

Trained from scratch on the answer token only, by epochs over the training samples (AdamW, a
cosine schedule with a quarter epoch of warm-up, an EMA of the weights when the recipe asks),
checked on the whole validation set after each epoch. Its cache folder is written by
:mod:`cure_core.model.store`. Circuits corrupt its fixed-length prompts in place
(:mod:`cure_core.corruptions`), so every sample keeps its pair.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from cure_core.errors import CureError
from cure_core.model import recipe as recipes
from cure_core.model.backends.base import Capabilities, Corruption, ModelBackend
from cure_core.model.card import ModelCard
from cure_core.model.recipe import Recipe
from cure_core.model.recommender import Recommender
from cure_core.model.store import CorruptModelError, load_item_model, load_recommender, save_recommender
from cure_core.model.training import TrainingPlan, TrainSets, seed_everything, stop_reason

if TYPE_CHECKING:
    from cure_core.data import RatingsDataset, Samples
    from cure_core.text_corruptions import PromptBatches

ITEM_CAPABILITIES = Capabilities(
    trains_here=True, has_retrain=True, embedding_rows=True, costly_scoring=False, score_batch=1024
)
NAME = "Item model (trained here)"


class ItemBackend(ModelBackend):
    """The item-token recommender of ``recipe`` (default: the project's default model)."""

    recipe: Recipe

    def __init__(self, recipe: Recipe | None = None) -> None:
        recipe = recipe or Recipe()
        arch = {"gpt2": "GPT-2", "llama": "Llama"}[recipe.arch]
        super().__init__(NAME, f"the {arch} item-token recommender trained here", ITEM_CAPABILITIES, recipe)

    def training_plan(self, dataset: RatingsDataset, samples: Samples, sets: TrainSets) -> TrainingPlan:
        from transformers import AutoModelForCausalLM

        from cure_core.prompts import ItemModeEncoder, ItemVocab

        recipe = self.recipe
        seed_everything(recipe.seed)
        vocab = ItemVocab.for_samples(samples)
        encoder = ItemModeEncoder(vocab, samples)
        seq_len = 2 * samples.config.history_len + 3
        model = AutoModelForCausalLM.from_config(recipe.hf_config(len(vocab), seq_len))
        rec = Recommender(model=model, encoder=encoder, known_users=sets.known_users, backend=self)
        rng = np.random.default_rng(recipe.seed)
        per_epoch = math.ceil(len(sets.train) / recipe.batch_size)
        total_steps = per_epoch * recipe.max_epochs
        warmup = max(1, per_epoch // 4)
        targets = torch.tensor([encoder.no_id, encoder.yes_id])
        mixed = recipe.train_precision == "bf16-mixed"

        def batches() -> Iterator[np.ndarray]:
            while True:
                order = rng.permutation(sets.train)
                for step in range(per_epoch):
                    yield order[step * recipe.batch_size : (step + 1) * recipe.batch_size]

        def loss(rec: Recommender, idx: np.ndarray, known: np.ndarray) -> torch.Tensor:
            """Cross-entropy of the answer token; the forward under bfloat16 autocast when the
            recipe says ``bf16-mixed`` (weights, optimizer, EMA and evaluation stay float32)."""
            with torch.autocast(rec.device.type, dtype=torch.bfloat16, enabled=mixed):
                logits = rec.last_logits(rec.encode(samples, idx, known))
            return torch.nn.functional.cross_entropy(logits.float(), targets[samples.label[idx]])

        return TrainingPlan.of_recipe(
            recipe,
            (rec, samples, rng, batches(), loss),
            lr_factor=_warmup_cosine(warmup, total_steps),
            total_steps=total_steps,
            check_every=per_epoch,
            checked={"valid": sets.valid, "test": sets.test},
            position=lambda step: {"epoch": -(-step // per_epoch)},
            ema_decay=recipe.ema_decay,
        )

    def save(
        self, rec: Recommender, folder: Path, dataset: RatingsDataset, samples: Samples, card: ModelCard
    ) -> Recommender:
        save_recommender(rec, folder, samples, card)
        return rec

    def load(self, folder: Path, dataset: RatingsDataset, samples: Samples) -> Recommender:
        rec = load_item_model(folder, samples, self)
        if cut_short(rec.card):
            raise CorruptModelError(
                f"model {folder.name} stopped after {len(rec.card.curve or [])} of "
                f"{rec.card.recipe.max_epochs} epochs on a wall-clock budget, so it cannot serve as {(rec.card.role or 'a reference').capitalize()}",
                "it is retrained by epochs and validation patience",
            )
        return rec

    def save_run_model(self, rec: Recommender, folder: Path, samples: Samples, card: ModelCard) -> None:
        save_recommender(rec, folder, samples, card)

    def load_run_model(self, folder: Path, dataset: RatingsDataset, samples: Samples) -> Recommender:
        return load_recommender(folder, samples, self)

    def check_corruption(self, name: str) -> None:
        from cure_core.corruptions import check_corruption

        check_corruption(name)

    def corrupted_batches(self, rec: Recommender, asked: Corruption) -> PromptBatches:
        """Fixed-length prompts corrupted in place: every sample is kept."""
        from analysis.prompts import PromptBatch
        from cure_core.corruptions import corrupt
        from cure_core.text_corruptions import PromptBatches

        samples, idx, size = asked.samples, asked.idx, asked.size
        known = rec.user_known(samples, idx)
        clean = rec.encode(samples, idx)
        bad = corrupt(asked.name, samples, idx, known, asked.request, asked.rng)
        corrupted = rec.encoder.encode(
            bad.samples, np.arange(len(idx)), bad.user_known if bad.user_known is not None else known
        )
        if clean.attention_mask is not None:
            raise CureError(
                "circuit discovery needs an item-mode model or a text-mode model with a prompt profile",
                "use a model trained here (`cure train`) or load the checkpoint with a prompt profile; this "
                "encoder's prompts change length under corruption",
            )
        w = asked.weight(idx)
        batches = [
            PromptBatch(clean.input_ids[i : i + size], corrupted.input_ids[i : i + size], w[i : i + size])
            for i in range(0, len(idx), size)
        ]
        return PromptBatches(batches, idx, 0)

    def bridge(self, rec: Recommender, device: str | None) -> Any:
        """Booted from the model's cache folder on ``device`` (default: CUDA when present)."""
        from cure_core.checkpoints.bridge import load_bridge

        if rec.path is None:
            raise ValueError("an item model needs its cache folder to boot a bridge")
        return load_bridge(rec.path, device or ("cuda" if torch.cuda.is_available() else "cpu"))


def _warmup_cosine(warmup: int, total_steps: int) -> Callable[[int], float]:
    """Linear warm-up over ``warmup`` steps, then a cosine decay to zero at ``total_steps``."""
    return lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total_steps)))


def cut_short(card: ModelCard) -> bool:
    """Whether a cached item model's curve ends before the stopping rule says it should — trained
    under the wall-clock budget of earlier versions on a busy machine. Such a model depends on
    the machine's load and must not serve as Original or Retrain."""
    recipe = card.recipe
    if (
        not isinstance(recipe, recipes.Recipe)
        or card.curve is None
        or any("valid_auc" not in row for row in card.curve)
    ):
        raise CorruptModelError(
            "meta.json lacks the training curve or item recipe",
            "delete the folder; cached models are retrained on next use",
        )
    return stop_reason([float(row["valid_auc"]) for row in card.curve], recipe.max_epochs, recipe.patience) is None
