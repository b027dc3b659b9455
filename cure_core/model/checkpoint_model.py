"""A Hugging Face checkpoint as a :class:`~cure_core.model.recommender.Recommender` — a user's,
the text model trained here, a run's saved folder: loaded through its prompt profile, checked
against the model it is the Retrain of, and fingerprinted."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cure_core.errors import CureError
from cure_core.model.card import ModelCard
from cure_core.model.recommender import Recommender
from cure_core.model_source import MissingRetrainError, ModelSource

if TYPE_CHECKING:
    from cure_core.checkpoints import CheckpointInfo
    from cure_core.data import RatingsDataset, Samples
    from cure_core.model.backends.base import ModelBackend

Role = Literal["original", "retrain"]
SAMPLED_BLOCKS, BLOCK = 16, 1 << 16


def load_checkpoint_model(
    source: ModelSource, role: Role, dataset: RatingsDataset, samples: Samples, backend: ModelBackend
) -> Recommender:
    """The original (``--model`` + ``--adapter``) or Retrain of ``source``, prompted with its
    profile, as a model of ``backend``."""
    from cure_core.checkpoints import load_checkpoint
    from cure_core.profiles import ProfileEncoder, load_profile

    if source.model is None:
        raise ValueError("load_checkpoint_model needs a source with a model")
    if role == "original":
        model, adapter = source.model, source.adapter
    elif not source.has_retrain:
        raise MissingRetrainError()
    else:
        model, adapter = source.retrain_model or source.model, source.retrain_adapter
    profile = load_profile(source.profile)
    loaded = load_checkpoint(model, adapter, source.dtype, source.device)
    encoder = ProfileEncoder(profile, loaded.tokenizer, dataset, samples)
    info = loaded.info
    card = ModelCard(
        kind="checkpoint",
        role=role,
        checkpoint=info,
        profile=profile.name,
        n_params=info.n_params,
        # the loaded profile's every field: what its prompts depend on, wherever the file lies
        fingerprint=fingerprint(model, adapter, source.dtype, json.dumps(asdict(profile), sort_keys=True)),
    )
    return Recommender(
        model=loaded.model,
        encoder=encoder,
        known_users=None,
        backend=backend,
        card=card,
        path=Path(model),
        checkpoint=loaded,
    )


REFERENCE_FIELDS = ("architecture", "model_type", "n_layers", "n_heads", "n_kv_heads", "d_model", "vocab_size")
"""What a user's Retrain must share with the model it is the reference of (``CheckpointInfo`` fields)."""


def check_reference(original: Recommender, retrain: Recommender) -> None:
    """Refuse a Retrain that is not the same kind of model as ``original``: another architecture
    or shape, another tokenizer, other answer tokens or another prompt profile would make every
    distance to it measure that difference instead of forgetting."""
    theirs, ours = retrain.card.checkpoint, original.card.checkpoint
    if theirs is None or ours is None:
        raise ValueError("check_reference compares two checkpoints")
    where = f"the Retrain {retrain.path}" + (f" + {theirs.adapter.path}" if theirs.adapter else "")
    fix = "give the Retrain trained from the same base model, tokenizer and prompts (without the forget set)"
    for field in REFERENCE_FIELDS:
        mine, other = getattr(theirs, field), getattr(ours, field)
        if mine != other:
            raise CureError(f"{where} does not match the model: {field} {mine} vs {other}", fix)
    vocab = retrain.checkpoint.tokenizer.get_vocab(), original.checkpoint.tokenizer.get_vocab()  # type: ignore[union-attr]
    if vocab[0] != vocab[1]:
        differ = sorted(set(vocab[0].items()) ^ set(vocab[1].items()))[:1]
        raise CureError(f"{where} does not match the model: another tokenizer (e.g. token {differ})", fix)
    answers = (retrain.encoder.yes_id, retrain.encoder.no_id), (original.encoder.yes_id, original.encoder.no_id)
    if answers[0] != answers[1]:
        raise CureError(f"{where} does not match the model: answer token ids {answers[0]} vs {answers[1]}", fix)


def fingerprint(model: str, adapter: str | None, dtype: str, profile_text: str) -> str:
    """A sha256 over what decides a user model's outputs: the weight files, the dtype and profile.

    Each weight file counts by its name, size and :data:`SAMPLED_BLOCKS` blocks spread over it
    (its safetensors header among them) rather than every byte, so a 7B checkpoint is keyed in
    milliseconds, not a minute. Two fine-tunes of one base differ in every block; a file edited in
    place between samples with its size kept would not be noticed — delete ``cache/attributions``
    after such an edit.
    """
    digest = hashlib.sha256(f"{dtype}\n{profile_text}".encode())
    for folder in [model, adapter]:
        if folder is None:
            continue
        root = Path(folder).expanduser()
        names = sorted(p for p in root.iterdir() if p.suffix in (".safetensors", ".bin", ".json"))
        for path in names:
            size = path.stat().st_size
            digest.update(f"{path.name}:{size}".encode())
            with open(path, "rb") as handle:
                for k in range(SAMPLED_BLOCKS):
                    handle.seek(size * k // SAMPLED_BLOCKS)
                    digest.update(handle.read(BLOCK))
    return digest.hexdigest()


def saved_fields(folder: Path, info: CheckpointInfo | None, profile: str | None) -> dict[str, Any]:
    """What the card of a folder a run saved records of its model: the checkpoint it was
    unlearned from and the prompt profile it answers in (``None`` for item tokens), and the
    sampled :func:`fingerprint` of the files written so far (a 7B model is keyed in milliseconds)."""
    dtype = info.dtype if info is not None else ""
    return {
        "unlearned_from": info,
        "profile": profile,
        "fingerprint": fingerprint(str(folder), None, dtype, str(profile)),
    }
