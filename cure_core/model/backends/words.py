"""What the models prompted in words share — the text model trained here and a user's
checkpoint: a Hugging Face folder read through a prompt profile, corrupted by same-length
swaps, bridged in place, and a run's unlearned weights saved as a Hugging Face folder."""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cure_core.cache import atomic_directory
from cure_core.errors import CureError
from cure_core.model.backends.base import Corruption, ModelBackend
from cure_core.model.card import ModelCard, write_card
from cure_core.model.checkpoint_model import load_checkpoint_model, saved_fields
from cure_core.model.recommender import Recommender

if TYPE_CHECKING:
    from cure_core.data import RatingsDataset, Samples
    from cure_core.model_source import ModelSource
    from cure_core.profiles.encoder import ProfileEncoder
    from cure_core.text_corruptions import PromptBatches


class WordsBackend(ModelBackend):
    """A model whose prompts are written in words by a profile (see the module docstring)."""

    profile_name: str
    """The prompt profile its models read: a shipped name or a ``.toml`` path."""

    def check_corruption(self, name: str) -> None:
        from cure_core.profiles import load_profile
        from cure_core.text_corruptions import check_corruption

        check_corruption(load_profile(self.profile_name), name)

    def corrupted_batches(self, rec: Recommender, asked: Corruption) -> PromptBatches:
        """Titles swapped for same-length ones (:mod:`cure_core.text_corruptions`), left padded
        with attention masks; samples without a same-length pair are dropped — a warning says
        how many, and the result's ``idx`` / ``dropped`` say which samples the batches hold."""
        from cure_core.text_corruptions import PromptBatches, pair_batches, text_pairs

        encoder: ProfileEncoder = rec.encoder  # type: ignore[assignment]
        samples, idx, corruption = asked.samples, asked.idx, asked.name
        pairs = text_pairs(encoder, corruption, samples, idx, rec.user_known(samples, idx), asked.request, asked.rng)
        if not len(pairs.kept):
            raise CureError(
                f"none of the {len(idx)} prompt(s) has a {corruption}-corrupted partner of the same token length",
                "use another corruption (history or target swap titles for same-length ones), or more prompts",
            )
        if pairs.dropped:
            warnings.warn(
                f"{pairs.dropped} of {len(idx)} prompt(s) had no same-length {corruption}-corrupted "
                "partner and were dropped",
                stacklevel=3,
            )
        held = idx[pairs.kept]
        return PromptBatches(pair_batches(pairs, asked.weight(held), asked.size, encoder.pad_id), held, pairs.dropped)

    def bridge(self, rec: Recommender, device: str | None) -> Any:
        """Wrapped in place on the model's own device, so nothing is loaded twice. A LoRA run's
        model is bridged as a merged copy: wrapped in place, GPT-2's bridged attention would read
        q/k/v copies split from ``c_attn`` without its adapter, and scoring would change with it."""
        from cure_core.checkpoints import boot_bridge
        from cure_core.checkpoints.copies import merged_copy

        loaded = rec.checkpoint
        if loaded is None:
            raise ValueError("a model prompted in words is bridged from its loaded checkpoint")
        if rec.lora:
            loaded = replace(loaded, model=merged_copy(rec.model))  # type: ignore[arg-type]
        return boot_bridge(loaded)

    def run_model_source(self, folder: Path) -> ModelSource:
        """How a run's saved folder is loaded again: as a checkpoint with this profile."""
        from cure_core.model_source import ModelSource

        return ModelSource(model=str(folder), profile=self.profile_name)

    def saved_fields(self, rec: Recommender, folder: Path) -> dict[str, Any]:
        info = rec.checkpoint.info if rec.checkpoint is not None else None
        return saved_fields(folder, info, rec.encoder.profile.name)  # type: ignore[attr-defined]

    def save_run_model(self, rec: Recommender, folder: Path, samples: Samples, card: ModelCard) -> None:
        """A Hugging Face folder (``save_pretrained`` safetensors, the tokenizer, ``meta.json``)
        that loads again as ``--model``; its card says what
        :func:`~cure_core.model.checkpoint_model.saved_fields` records."""
        loaded = rec.checkpoint
        if loaded is None:
            raise ValueError("a model prompted in words is saved with its loaded checkpoint's tokenizer")
        with atomic_directory(folder) as tmp:
            rec.model.save_pretrained(tmp, safe_serialization=True)
            loaded.tokenizer.save_pretrained(tmp)
            write_card(tmp, card.model_copy(update={"kind": "checkpoint", **self.saved_fields(rec, tmp)}))

    def load_run_model(self, folder: Path, dataset: RatingsDataset, samples: Samples) -> Recommender:
        return load_checkpoint_model(self.run_model_source(folder), "original", dataset, samples, self)
