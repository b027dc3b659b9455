"""Samples written as a profile's prompts and tokenized for a checkpoint (left padded).

Implements ``cure_core.prompts.PromptEncoder``: the answer is read at the last position of
every row, so rows are padded on the left and carry an attention mask.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from cure_core.data.dataset import RatingsDataset
from cure_core.data.samples import Samples
from cure_core.errors import CureError
from cure_core.profiles.answers import answer_token_ids
from cure_core.profiles.profile import Profile
from cure_core.profiles.slots import Slots, WrittenPrompt, mark
from cure_core.prompts import EncodedBatch


class PromptWriter:
    """Writes samples of ``dataset`` as ``profile``'s prompts (text only: no tokenizer needed,
    which is what training a tokenizer on the prompts requires)."""

    def __init__(self, profile: Profile, dataset: RatingsDataset, samples: Samples) -> None:
        self.profile = profile
        items = dataset.items.set_index("item")
        titles = dataset.titles()
        self.item_text = [
            profile.render_item(
                name=titles.get(i, i),
                title=items.at[i, "title"],
                year=items.at[i, "year"],
                genres=[g for g in items.at[i, "genres"].split("|") if g],
            )
            for i in samples.item_ids
        ]
        self.users = self._user_fields(dataset, samples)
        self.user_ids = list(samples.user_ids)
        user_code = {u: c for c, u in enumerate(samples.user_ids)}
        item_code = {it: c for c, it in enumerate(samples.item_ids)}
        r = dataset.ratings
        self.stars = {
            (user_code[u], item_code[it]): s
            for u, it, s in zip(r["user"], r["item"], r["rating"], strict=True)
            if u in user_code
        }
        if len(samples) == 0:
            raise CureError(
                "no samples to write prompts for",
                "use a dataset with users that have more ratings than the history length",
            )

    def _user_fields(self, dataset: RatingsDataset, samples: Samples) -> list[dict[str, str]]:
        needed = self.profile.user_fields
        if not needed:
            return [{} for _ in samples.user_ids]
        users = dataset.users
        missing = [f for f in needed if users is None or f not in users.columns]
        if missing:
            raise CureError(
                f"profile {self.profile.name} writes the user's {', '.join(missing)}, which dataset "
                f"{dataset.name} does not have",
                "use a dataset with a user file (MovieLens-100K's u.user) or a profile without user fields "
                "(tallrec, compact)",
            )
        table = users.astype(str).set_index(users["user"].astype(str))
        absent = [u for u in samples.user_ids if u not in table.index]
        if absent:
            raise CureError(
                f"the user file of {dataset.name} lacks {len(absent)} rated user(s), e.g. {absent[0]}",
                "complete the user file or use a profile without user fields",
            )
        return [{f: table.at[u, f] for f in needed} for u in samples.user_ids]

    def slots(self, samples: Samples, i: int, user_known: bool = True) -> Slots:
        """What the prompt of sample ``i`` writes, slot by slot."""
        user = int(samples.user[i])
        history = tuple(int(item) for item in samples.history[i])
        return Slots(
            user=user,
            history=history,
            likes=tuple(bool(like) for like in samples.history_likes[i]),
            stars=tuple(round(self.stars[(user, item)]) for item in history),
            target=int(samples.target[i]),
            user_known=bool(user_known),
        )

    def prompt(self, samples: Samples, i: int, user_known: bool = True) -> str:
        """The prompt of sample ``i``; an unknown user is written without their id."""
        return self.write(self.slots(samples, i, user_known))

    def write(self, slots: Slots, item_text: Callable[[int, int], str] | None = None) -> str:
        """The prompt of ``slots``; ``item_text(slot, item)`` overrides how an item is written."""
        text = item_text or (lambda slot, item: self.item_text[item])
        entries, liked, disliked = [], [], []
        for pos, (item, like, stars) in enumerate(zip(slots.history, slots.likes, slots.stars, strict=True)):
            entry = self.profile.render_entry(item=text(pos, item), index0=pos, index=pos + 1, stars=stars, liked=like)
            entries.append(entry)
            (liked if like else disliked).append(entry)
        return self.profile.render(
            history=entries,
            liked=liked,
            disliked=disliked,
            target=text(slots.target_slot, slots.target),
            user_id=self.user_ids[slots.user] if slots.user_known else "",
            user_known=slots.user_known,
            **self.users[slots.user],
        )

    def written(self, slots: Slots) -> WrittenPrompt:
        """The prompt of ``slots`` with the character span of every item it writes."""
        marked = self.write(slots, lambda slot, item: mark(self.item_text[item], slot))
        return WrittenPrompt.from_marked(marked, self.write(slots), f"profile {self.profile.name}")


class ProfileEncoder(PromptWriter):
    """Writes samples of ``dataset`` with ``profile`` and tokenizes them with ``tokenizer``."""

    def __init__(
        self, profile: Profile, tokenizer: PreTrainedTokenizerBase, dataset: RatingsDataset, samples: Samples
    ) -> None:
        super().__init__(profile, dataset, samples)
        self.tokenizer = tokenizer
        self.pad_id = next((t for t in (tokenizer.pad_token_id, tokenizer.eos_token_id) if t is not None), 0)
        self._lengths: dict[tuple[str, str], np.ndarray] = {}
        self.yes_id, self.no_id = answer_token_ids(
            tokenizer, self.prompt(samples, 0), profile.yes, profile.no, profile.add_special_tokens
        )

    def token_texts(self, ids: list[int], titles: dict[str, str]) -> list[str]:
        """Each token as the tokenizer writes it (line breaks shown as ⏎)."""
        return [self.tokenizer.decode([t]).replace("\n", "⏎") for t in ids]

    def prompt_text(self, ids: list[int], titles: dict[str, str]) -> str:
        """The prompt as it was written."""
        return self.tokenizer.decode(ids)

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """``texts`` tokenized as prompts (with the profile's special tokens), unpadded."""
        if not texts:
            return []
        return self.tokenizer(texts, add_special_tokens=self.profile.add_special_tokens)["input_ids"]

    def item_lengths(self, left: str, right: str) -> np.ndarray:
        """Tokens in ``left + item + right`` for every item code: an item's length in that
        context, up to a constant (cached per context)."""
        key = (left, right)
        if key not in self._lengths:
            rows = self.tokenizer([left + t + right for t in self.item_text], add_special_tokens=False)["input_ids"]
            self._lengths[key] = np.array([len(r) for r in rows])
        return self._lengths[key]

    def encode(self, samples: Samples, idx: np.ndarray, user_known: np.ndarray | None = None) -> EncodedBatch:
        known = np.ones(len(idx), bool) if user_known is None else user_known
        prompts = [self.prompt(samples, int(i), bool(k)) for i, k in zip(idx, known, strict=True)]
        rows = self.token_ids(prompts)
        width = max((len(r) for r in rows), default=0)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for j, row in enumerate(rows):
            ids[j, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[j, width - len(row) :] = 1
        return EncodedBatch(ids, mask)
