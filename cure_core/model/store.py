"""Saving and loading checkpoints: safetensors weights, vocabulary and metadata in one folder.

A model folder (``cache/models/<key>/``) holds ``model.safetensors`` and ``config.json`` (Hugging
Face format, loadable by ``TransformerBridge.boot_transformers``), ``vocab.json`` (item mode) and
``meta.json`` (its :class:`~cure_core.model.card.ModelCard`: data hash, split, recipe, metrics,
the users it knows, the weights file's sha256).
Weights are only ever read with safetensors — never pickle.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from transformers import AutoModelForCausalLM

from cure_core.cache import atomic_directory
from cure_core.data.samples import Samples
from cure_core.errors import CureError
from cure_core.model.card import ModelCard, read_card, write_card
from cure_core.model.recommender import Recommender
from cure_core.prompts import ItemModeEncoder, ItemVocab

if TYPE_CHECKING:
    from cure_core.model.backends.base import ModelBackend

WEIGHTS = "model.safetensors"


class CorruptModelError(CureError):
    """A model folder that cannot be read back; cache entries with this error are rebuilt."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_recommender(rec: Recommender, folder: Path, samples: Samples, card: ModelCard) -> None:
    """Write the model folder atomically (a crash leaves the previous folder, if any). An item
    model's identity is its weights file's sha256 (``fingerprint`` and ``file_sha256`` agree)."""
    with atomic_directory(folder) as tmp:
        rec.model.save_pretrained(tmp, safe_serialization=True)
        vocab: ItemVocab = rec.encoder.vocab  # type: ignore[attr-defined]
        vocab.to_hf_tokenizer().save_pretrained(tmp)
        (tmp / "vocab.json").write_text(json.dumps(vocab.tokens))
        known = [samples.user_ids[u] for u in rec.known_users] if rec.known_users is not None else None
        digest = file_sha256(tmp / WEIGHTS)
        card = card.model_copy(
            update={"kind": "item", "known_users": known, "fingerprint": digest, "file_sha256": digest}
        )
        write_card(tmp, card)
    rec.card, rec.path = card, folder


def load_recommender(folder: Path, samples: Samples, backend: ModelBackend) -> Recommender:
    """Load a model folder of the cache (an item-mode model trained or unlearned here)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CureError(
            f"no model folder at {folder}", "train one with `cure train`, or give the folder of a model in the cache"
        )
    if not (folder / "vocab.json").exists() and not _written_here(folder):
        raise CureError(
            f"{folder} is not a model folder of this cache (no vocab.json / meta.json)",
            "to work on a Hugging Face checkpoint, pass it as --model PATH (with --adapter and --profile)",
        )
    return load_item_model(folder, samples, backend)


def _written_here(folder: Path) -> bool:
    """Whether ``meta.json`` marks an item-mode folder of :func:`save_recommender` (then a missing
    ``vocab.json`` makes it corrupt, not a text-mode checkpoint)."""
    try:
        return read_card(folder).kind == "item"
    except (OSError, ValueError):
        return False


def load_item_model(folder: Path, samples: Samples, backend: ModelBackend) -> Recommender:
    """An item-mode folder written by :func:`save_recommender`; anything unreadable or
    inconsistent in it (weights, checksum, ``meta.json``, ``vocab.json``) is a
    :class:`CorruptModelError`, so a cache entry is rebuilt instead of failing later."""
    try:
        card = read_card(folder)
        tokens = json.loads((folder / "vocab.json").read_text())
        if file_sha256(folder / WEIGHTS) != card.file_sha256:
            raise ValueError("weights do not match the checksum in meta.json")
        if (
            not isinstance(tokens, list)
            or not all(isinstance(t, str) for t in tokens)
            or len(set(tokens)) != len(tokens)
        ):
            raise ValueError("vocab.json is not a list of distinct strings")
        known = card.known_users
        model = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True, local_files_only=True)
        vocab = ItemVocab(tokens)
    except (OSError, ValueError, KeyError, CureError) as err:
        raise CorruptModelError(
            f"model folder {folder} is unreadable ({str(err).splitlines()[0][:160]})",
            "delete the folder; cached models are retrained on next use",
        ) from None
    if model.get_input_embeddings().num_embeddings != len(vocab):
        raise CorruptModelError(
            f"model folder {folder}: embedding size differs from vocab.json",
            "delete the folder so the model is retrained",
        )
    encoder = ItemModeEncoder(vocab, samples)
    known_codes = samples.user_codes(known) if known is not None else None
    model.eval()
    return Recommender(model=model, encoder=encoder, known_users=known_codes, backend=backend, card=card, path=folder)
