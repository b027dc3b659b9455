"""The text model trained here (:class:`~cure_core.model.recipe.TextRecipe`): words, like a
TALLRec-style model reads them, learned by a small causal LM on this data.

1. A byte-level BPE tokenizer is trained on a seeded draw of the model's *own* training prompts
   (Retrain's never sees the forget users' prompts, so its vocabulary cannot carry them either).
2. A randomly initialised GPT-2 / Llama learns the answer word after each prompt (cross-entropy
   over the full vocabulary at the answer position, as the item model does), plus — weighted by
   ``rating_loss`` — the next-token loss on every rating word of the history (the tokens that tell
   a liked entry from a disliked one). A prompt then teaches up to eleven ratings instead of one;
   that is what makes a few epochs' worth of learning fit in minutes on a CPU.
3. Every ``eval_every`` steps the validation AUC of a fixed seeded draw decides the best weights
   and the stop (patience), never wall time; test AUC of a fixed draw is recorded for the curve.

It is saved as a Hugging Face folder (``cache/models/text-<role>-…/``: what ``save_pretrained``
writes for the model and its tokenizer, and ``meta.json`` with ``kind: text-recipe``) and read
back by the loader of a user's checkpoint, with the recipe's profile.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from cure_core.cache import atomic_directory
from cure_core.errors import CureError
from cure_core.model.backends.base import Capabilities
from cure_core.model.backends.words import WordsBackend
from cure_core.model.card import ModelCard, read_card, write_card
from cure_core.model.checkpoint_model import load_checkpoint_model
from cure_core.model.recipe import TextRecipe
from cure_core.model.recommender import Recommender
from cure_core.model.store import WEIGHTS, CorruptModelError, file_sha256
from cure_core.model.training import TrainingPlan, TrainSets, seed_everything

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

    from cure_core.data import RatingsDataset, Samples
    from cure_core.profiles import ProfileEncoder, PromptWriter

TEXT_CAPABILITIES = Capabilities(
    trains_here=True, has_retrain=True, embedding_rows=False, costly_scoring=True, score_batch=64
)
NAME = "Text model (trained here)"
N_POSITIONS = 512
NEW_USER_SHARE = 0.1  # of the tokenizer's corpus written for "a new user", as training writes some
CHECK_BATCH = 1024  # prompts per batch of a training check (left padding depends on the batch)


class TextBackend(WordsBackend):
    """The text recommender of ``recipe``."""

    folder_prefix = "text-"
    recipe_flags = ("--recipe text",)
    recipe: TextRecipe

    def __init__(self, recipe: TextRecipe | None = None) -> None:
        recipe = recipe or TextRecipe()
        description = f"the {recipe.arch} text model trained here, prompted with the {recipe.profile} profile"
        super().__init__(NAME, description, TEXT_CAPABILITIES, recipe)
        self.profile_name = recipe.profile

    def training_plan(self, dataset: RatingsDataset, samples: Samples, sets: TrainSets) -> TrainingPlan:
        """See the module docstring."""
        from transformers import AutoModelForCausalLM

        from cure_core.profiles import ProfileEncoder, PromptWriter, load_profile

        recipe = self.recipe
        seed_everything(recipe.seed)
        profile = load_profile(recipe.profile)
        writer = PromptWriter(profile, dataset, samples)
        tokenizer = text_tokenizer(writer, samples, sets.train, recipe)
        encoder = ProfileEncoder(profile, tokenizer, dataset, samples)
        config = recipe.hf_config(len(tokenizer), N_POSITIONS)
        model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
        rec = Recommender(model=model, encoder=encoder, known_users=None, backend=self)
        ratings = rating_token_ids(encoder, samples) if recipe.rating_loss else torch.zeros(0, dtype=torch.long)
        rng = np.random.default_rng(recipe.seed)
        checked = {
            name: np.sort(rng.choice(idx, size=min(recipe.eval_samples, len(idx)), replace=False))
            for name, idx in (("valid", sets.valid), ("test", sets.test))
        }
        warmup = max(1, min(100, recipe.max_steps // 10))
        answers = torch.tensor([encoder.no_id, encoder.yes_id])

        def batches() -> Iterator[np.ndarray]:
            order, cursor = rng.permutation(sets.train), 0
            while True:
                if cursor + recipe.batch_size > len(order):
                    order, cursor = rng.permutation(sets.train), 0
                yield order[cursor : cursor + recipe.batch_size]
                cursor += recipe.batch_size

        def loss(rec: Recommender, idx: np.ndarray, known: np.ndarray) -> torch.Tensor:
            return answer_and_rating_loss(rec, samples, idx, known, answers, ratings, recipe)

        return TrainingPlan.of_recipe(
            recipe,
            (rec, samples, rng, batches(), loss),
            lr_factor=lambda s: (
                min(1.0, (s + 1) / warmup) * max(0.05, 0.5 * (1 + math.cos(math.pi * min(1.0, s / recipe.max_steps))))
            ),
            total_steps=recipe.max_steps,
            check_every=recipe.eval_every,
            checked=checked,
            position=lambda step: {"step": step, "epoch": round(step * recipe.batch_size / len(sets.train), 3)},
            check_batch=CHECK_BATCH,
        )

    def save(
        self, rec: Recommender, folder: Path, dataset: RatingsDataset, samples: Samples, card: ModelCard
    ) -> Recommender:
        """Write the model, its tokenizer and ``meta.json`` atomically; the card holds the
        weights file's sha256 for integrity (the identity is computed when it is loaded). It is
        returned as it is read back, through the loader every later use takes."""
        tokenizer = rec.encoder.tokenizer  # type: ignore[attr-defined]
        with atomic_directory(folder) as tmp:
            rec.model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            write_card(tmp, card.model_copy(update={"kind": "text-recipe", "file_sha256": file_sha256(tmp / WEIGHTS)}))
        return self.load(folder, dataset, samples)

    def load(self, folder: Path, dataset: RatingsDataset, samples: Samples) -> Recommender:
        """The folder as a model prompted in words; its card is the saved one, with what loading
        it as a checkpoint tells (its identity among them), the saved role kept."""
        from cure_core.model_source import ModelSource

        try:
            saved = read_card(folder)
            if saved.kind != "text-recipe":
                raise ValueError("meta.json is not a text model's")
            if file_sha256(folder / WEIGHTS) != saved.file_sha256:
                raise ValueError("weights do not match the checksum in meta.json")
            source = ModelSource(model=str(folder), profile=self.profile_name)
            rec = load_checkpoint_model(source, "original", dataset, samples, self)
        except (OSError, ValueError, KeyError, CureError) as err:
            raise CorruptModelError(
                f"model folder {folder} is unreadable ({str(err).splitlines()[0][:160]})",
                "delete the folder; cached models are retrained on next use",
            ) from None
        rec.card = saved.filled_by(rec.card.model_copy(update={"role": saved.role, "kind": saved.kind}))
        rec.path = folder
        return rec


def text_tokenizer(
    writer: PromptWriter, samples: Samples, train: np.ndarray, recipe: TextRecipe
) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on a seeded draw of the training prompts, each followed by its
    answer (the text the model learns), so the answer words get tokens of their own."""
    from cure_core.model.example_checkpoint import train_tokenizer

    rng = np.random.default_rng(recipe.seed)
    draw = rng.choice(train, size=min(recipe.tokenizer_prompts, len(train)), replace=False)
    known = rng.random(len(draw)) >= NEW_USER_SHARE
    profile = writer.profile
    texts = [
        writer.prompt(samples, int(i), bool(k)) + (profile.yes if samples.label[i] else profile.no)
        for i, k in zip(draw, known, strict=True)
    ]
    return train_tokenizer(texts, vocab_size=recipe.vocab_size)


def rating_token_ids(encoder: ProfileEncoder, samples: Samples) -> torch.Tensor:
    """The tokens that tell ratings apart in the history: sample 0 written with every entry
    liked at 5 stars, 4 stars, and disliked at 3 and 2 stars; the tokens where these equal-length
    writings differ. Empty when the writings differ in length (then no rating loss applies)."""
    base = encoder.slots(samples, 0)
    k = len(base.history)
    writings = [
        encoder.token_ids([encoder.write(replace(base, likes=(liked,) * k, stars=(stars,) * k))])[0]
        for liked, stars in ((True, 5), (True, 4), (False, 3), (False, 2))
    ]
    if len({len(w) for w in writings}) != 1:
        return torch.zeros(0, dtype=torch.long)
    rows = torch.tensor(writings)
    differs = (rows != rows[0]).any(0)
    return torch.unique(rows[:, differs])


def answer_and_rating_loss(
    rec: Recommender,
    samples: Samples,
    idx: np.ndarray,
    known: np.ndarray,
    answers: torch.Tensor,
    ratings: torch.Tensor,
    recipe: TextRecipe,
) -> torch.Tensor:
    """The answer loss of one batch, plus the weighted rating-word loss of its histories."""
    batch = rec.encode(samples, idx, known)
    if batch.input_ids.shape[1] > N_POSITIONS:
        raise CureError(
            f"a prompt of {batch.input_ids.shape[1]} tokens exceeds the text model's {N_POSITIONS} positions",
            "use the compact profile, or a larger vocab_size so that titles take fewer tokens",
        )
    ids, mask = batch.input_ids, batch.attention_mask
    with torch.autocast(rec.device.type, dtype=torch.bfloat16, enabled=recipe.train_precision == "bf16-mixed"):
        hidden = rec.model.base_model(
            input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0)
        ).last_hidden_state
        unembed = rec.model.get_output_embeddings()
        loss = torch.nn.functional.cross_entropy(unembed(hidden[:, -1]).float(), answers[samples.label[idx]])
        if len(ratings):
            following = ids[:, 1:]
            hit = torch.isin(following, ratings) & mask[:, 1:].bool()
            if hit.any():
                rating_logits = unembed(hidden[:, :-1][hit]).float()
                loss = loss + recipe.rating_loss * torch.nn.functional.cross_entropy(rating_logits, following[hit])
    return loss
