"""Turning samples into token ids: *item mode* (own vocabulary) and *text mode* (a tokenizer).

Item mode, for models trained here (method.md §1), 23 tokens for K = 10::

    <user> i1 l1 i2 l2 ... i10 l10 <target> <ask>   -> answer <yes>/<no> at the <ask> position

``l`` is ``<like>`` or ``<dislike>``. A user the model was not trained on is written as
``<unk_user>``; training drops known users to it now and then, so the fallback is learned.

Text mode, for a user's checkpoint with its own tokenizer, is written by a prompt profile
(:class:`cure_core.profiles.ProfileEncoder`): the same content in words, left padded so the
answer position is always the last one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from cure_core.data.samples import Samples
from cure_core.errors import CureError

PAD, UNK_USER, LIKE, DISLIKE, ASK, YES, NO, UNK_ITEM = (
    "<pad>",
    "<unk_user>",
    "<like>",
    "<dislike>",
    "<ask>",
    "<yes>",
    "<no>",
    "<unk_item>",
)
SPECIAL_TOKENS = [PAD, UNK_USER, LIKE, DISLIKE, ASK, YES, NO, UNK_ITEM]


@dataclass
class EncodedBatch:
    """Token ids ``[n, seq]`` and, for padded text prompts, the attention mask."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor | None = None


class PromptEncoder(Protocol):
    """What the model layer needs from a prompt format."""

    yes_id: int
    no_id: int

    def encode(self, samples: Samples, idx: np.ndarray, user_known: np.ndarray | None = None) -> EncodedBatch:
        """Prompts of samples ``idx``; where ``user_known[j]`` is False the user is written as unknown."""
        ...

    def token_texts(self, ids: list[int], titles: dict[str, str]) -> list[str]:
        """Each token of ``ids`` as a reader sees it (item titles from ``titles``)."""
        ...

    def prompt_text(self, ids: list[int], titles: dict[str, str]) -> str:
        """The prompt of ``ids`` as a reader sees it."""
        ...


class ItemVocab:
    """The item-mode vocabulary: special tokens, then one token per user and per item."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.index = {t: i for i, t in enumerate(tokens)}
        if tokens[: len(SPECIAL_TOKENS)] != SPECIAL_TOKENS:
            raise CureError(
                "vocab.json does not start with the item-mode special tokens",
                "retrain the model (delete its cache folder) with this version of CURE Studio",
            )

    @classmethod
    def for_samples(cls, samples: Samples) -> ItemVocab:
        return cls(SPECIAL_TOKENS + [f"u:{u}" for u in samples.user_ids] + [f"i:{i}" for i in samples.item_ids])

    def __len__(self) -> int:
        return len(self.tokens)

    def to_hf_tokenizer(self) -> PreTrainedTokenizerFast:
        """A whitespace word-level tokenizer over this vocabulary, saved beside the weights so
        tools that expect a tokenizer (TransformerLens' bridge, ``to_str_tokens``) read prompts
        like ``u:196 i:242 <like> ... <ask>``."""
        tokenizer = Tokenizer(models.WordLevel(self.index, unk_token=UNK_ITEM))
        tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        return PreTrainedTokenizerFast(
            tokenizer_object=tokenizer, unk_token=UNK_ITEM, pad_token=PAD, bos_token=PAD, eos_token=PAD
        )

    def check_covers(self, samples: Samples) -> None:
        """A model can only read data whose users and items it has tokens for."""
        missing_items = [i for i in samples.item_ids if f"i:{i}" not in self.index]
        missing_users = [u for u in samples.user_ids if f"u:{u}" not in self.index]
        if missing_items or missing_users:
            raise CureError(
                f"the model's vocabulary lacks {len(missing_items)} item(s) and {len(missing_users)} "
                "user(s) of this dataset",
                "train a model on this dataset (`cure train --data ...`) instead of reusing one trained on other data",
            )


class ItemModeEncoder:
    """Encodes samples as item-mode token ids (vectorised: one gather per field)."""

    def __init__(self, vocab: ItemVocab, samples: Samples) -> None:
        vocab.check_covers(samples)
        self.vocab = vocab
        self.yes_id, self.no_id = vocab.index[YES], vocab.index[NO]
        self.ask_id, self.unk_user_id = vocab.index[ASK], vocab.index[UNK_USER]
        self.user_token = np.array([vocab.index[f"u:{u}"] for u in samples.user_ids])
        self.item_token = np.array([vocab.index[f"i:{i}"] for i in samples.item_ids])
        self.like_token = np.array([vocab.index[DISLIKE], vocab.index[LIKE]])

    def token_texts(self, ids: list[int], titles: dict[str, str]) -> list[str]:
        """Each token as a reader sees it: items by title (cut to 18 characters), others as is."""
        tokens = [self.vocab.tokens[t] for t in ids]
        return [titles.get(t[2:], t)[:18] if t.startswith("i:") else t for t in tokens]

    def prompt_text(self, ids: list[int], titles: dict[str, str]) -> str:
        """A prompt's tokens as one line."""
        return " ".join(self.token_texts(ids, titles))

    def encode(self, samples: Samples, idx: np.ndarray, user_known: np.ndarray | None = None) -> EncodedBatch:
        user_tok = self.user_token[samples.user[idx]]
        if user_known is not None:
            user_tok = np.where(user_known, user_tok, self.unk_user_id)
        n, k = len(idx), samples.history.shape[1]
        ids = np.empty((n, 2 * k + 3), dtype=np.int64)
        ids[:, 0] = user_tok
        ids[:, 1 : 2 * k + 1 : 2] = self.item_token[samples.history[idx]]
        ids[:, 2 : 2 * k + 1 : 2] = self.like_token[samples.history_likes[idx]]
        ids[:, 2 * k + 1] = self.item_token[samples.target[idx]]
        ids[:, 2 * k + 2] = self.ask_id
        return EncodedBatch(torch.from_numpy(ids))
