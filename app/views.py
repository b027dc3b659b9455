"""What several pages show the same way: the model card, the missing-Retrain note, a prompt and
its tokens as the model reads them. UI only: the facts come from ``cure_core`` (the loaded
checkpoint's ``card``, the prompt encoder, the tokenizer)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st
import torch

from cure_core.data.samples import Samples
from cure_core.model.recommender import Recommender
from cure_core.model_source import ModelSource
from cure_core.workspace import Workspace

NO_RETRAIN = (
    "Retrain: not given — metrics against Retrain unavailable (pass --retrain-model / --retrain-adapter to `cure app`)"
)


def model_source_label(ws: Workspace) -> str:
    """One line naming the model the pages work on."""
    return ws.models.backend.description


def retrain_text(source: ModelSource) -> str:
    """Where the user's Retrain comes from, or :data:`NO_RETRAIN`."""
    if not source.has_retrain:
        return NO_RETRAIN
    if source.retrain_adapter:
        return f"given: adapter {source.retrain_adapter} over {source.retrain_model or source.model}"
    return f"given: model {source.retrain_model}"


def model_card(source: ModelSource, rec: Recommender, retrain: str | None = None) -> pd.DataFrame:
    """What was loaded for a text model (a user's checkpoint, or the text model trained here),
    one row per fact (all text, for one column); ``retrain``: where its Retrain comes from
    (default: :func:`retrain_text`)."""
    info = rec.card.checkpoint
    if info is None:
        raise ValueError("model_card shows a checkpoint's card")
    adapter = info.adapter
    grouped = info.n_kv_heads != info.n_heads
    profile = getattr(rec.encoder, "profile", None)
    rows = {
        "model": info.path,
        "architecture": f"{info.architecture} ({info.model_type})",
        "parameters": f"{info.n_params:,}",
        "layers": str(info.n_layers),
        "heads": f"{info.n_heads} query heads, {info.n_kv_heads} key/value heads"
        + (" (grouped-query attention)" if grouped else ""),
        "d_model / vocabulary": f"{info.d_model} / {info.vocab_size:,} tokens",
        "dtype": str(info.dtype),
        "device": str(info.device),
        "adapter": (
            f"LoRA rank {adapter.r}, alpha {adapter.alpha:g}, on {', '.join(adapter.target_modules)} "
            f"(merged) — {adapter.path}"
            if adapter
            else "none"
        ),
        "profile": f"{rec.card.profile}" + (f" — {profile.description}" if profile is not None else ""),
        "answer tokens (yes / no)": f"{rec.encoder.yes_id} / {rec.encoder.no_id}",
        "Retrain": retrain or retrain_text(source),
    }
    return pd.DataFrame({"value": list(rows.values())}, index=list(rows.keys()))


def show_model_card(source: ModelSource, rec: Recommender) -> None:
    st.dataframe(model_card(source, rec), width="stretch")
    if not source.has_retrain:
        st.info(NO_RETRAIN)


def prompt_text(rec: Recommender, samples: Samples, i: int, titles: dict[str, str]) -> str:
    """Sample ``i``'s prompt as the model reads it: words as written, item tokens by title."""
    batch = rec.encode(samples, np.array([i]))
    ids = batch.input_ids[0].tolist()
    return rec.encoder.prompt_text([ids[p] for p in real_positions(batch.input_ids, batch.attention_mask)], titles)


def token_labels(
    rec: Recommender, ids: torch.Tensor, mask: torch.Tensor | None, titles: dict[str, str], numbered: bool = True
) -> list[str]:
    """The tokens of the first row of ``ids``, left padding (``mask`` 0) left out: word pieces
    of a text model as its tokenizer writes them, item tokens by title. ``numbered`` prefixes
    each with its position, so repeated tokens stay apart as plot labels."""
    row = ids[0].tolist()
    words = rec.encoder.token_texts([row[p] for p in real_positions(ids, mask)], titles)
    return [f"{n}:{w}" for n, w in enumerate(words)] if numbered else words


def real_positions(ids: torch.Tensor, mask: torch.Tensor | None) -> list[int]:
    """Positions of the first row that hold prompt tokens (not left padding)."""
    if mask is None:
        return list(range(ids.shape[1]))
    return [p for p, m in enumerate(mask[0].tolist()) if m]


def show_prompt(rec: Recommender, samples: Samples, i: int, titles: dict[str, str], caption: str) -> None:
    """One prompt in a code block, with its length in tokens and true answer."""
    batch = rec.encode(samples, np.array([i]))
    n_tokens = len(real_positions(batch.input_ids, batch.attention_mask))
    answer = "Yes" if samples.label[i] else "No"
    st.caption(f"{caption} ({n_tokens} tokens; the true answer is {answer}):")
    st.code(prompt_text(rec, samples, i, titles), language=None, wrap_lines=True)
