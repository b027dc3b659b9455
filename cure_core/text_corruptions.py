"""Same-length corrupted prompts for text-mode recommenders (symmetric token replacement).

EAP and EAP-IG pair every clean prompt with a corrupted prompt of the same number of tokens
(text-mode.md §3). Item-mode prompts have a fixed length; a text prompt changes length when a
title does, so here a corruption swaps *titles* for titles of the same token length in context
(Zhang & Nanda 2023, arXiv 2309.16042), and the corrupted prompt differs from the clean one
only inside the swapped titles' character spans — both checked on every pair:

- ``history``: every history entry's item is swapped for another item of the same length in
  that place, drawn uniformly from the items of training histories, never one of the sample's
  own items (its history and target), no item twice. Each entry keeps the clean sample's
  like/dislike and stars: unlike item mode, which takes a donor's items *and* likes, the
  labels stay, because the liked/disliked words and lists (TALLRec writes liked and disliked
  entries in two lists) would change the text between the titles and its length. The
  corruption so replaces which items the user rated, not how.
- ``target``: the target is swapped for a same-length item among the training targets, not
  the clean target, nor any of an item request's items (as in item mode).
- ``user``: the user is written as unknown (the profile's ``user_known = false`` path); a
  profile that writes no user cannot be corrupted so.

Candidates are chosen by their token length in the slot's context (the text either side up to
the nearest whitespace, where tokenizers split words) and by holding the same quote characters
as the clean title (E2URec's Python-list history picks its quotes by content); the whole
corrupted prompt is then tokenized and checked.
A pair that fails is drawn again, up to ``MAX_DRAWS`` times, and then dropped (the user
corruption has nothing to draw: a pair of different lengths is dropped at once). Callers get
which samples were kept and must report how many were dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from analysis.prompts import PromptBatch
from cure_core.data.samples import Samples
from cure_core.errors import CureError
from cure_core.profiles.encoder import ProfileEncoder
from cure_core.profiles.profile import Profile
from cure_core.profiles.slots import Slots, WrittenPrompt
from cure_core.requests import ForgetRequest

TEXT_CORRUPTIONS = ("history", "target", "user")
MAX_DRAWS = 8  # draws of one pair's titles before the pair is dropped
CONTEXT_CHARS = 16  # at most this much text either side of a title that its candidates are measured in


class PromptBatches(list[PromptBatch]):
    """What ``cure_core.circuits.prompt_batches`` returns: prompt batches of some samples (a list, as attribution and faithfulness take it), with
    the samples ``idx`` they hold, in order, and how many asked-for samples were ``dropped``
    (text mode: no same-length corrupted prompt; item mode: always 0)."""

    def __init__(self, batches: list[PromptBatch], idx: np.ndarray, dropped: int) -> None:
        super().__init__(batches)
        self.idx = idx
        self.dropped = dropped


@dataclass
class TextPairs:
    """Clean and corrupted token ids of the kept samples (equal length per pair).

    ``kept`` are positions into the ``idx`` asked for, ascending; ``dropped`` = the rest.
    ``clean_slots`` / ``corrupt_slots`` say what each kept prompt writes (for inspection).
    """

    clean: list[list[int]]
    corrupt: list[list[int]]
    kept: np.ndarray
    dropped: int
    clean_slots: list[Slots] = field(default_factory=list)
    corrupt_slots: list[Slots] = field(default_factory=list)


def writes_user(profile: Profile) -> bool:
    """Whether the profile's prompt says who the user is (its id or whether they are known)."""
    return bool({"user_id", "user_known"} & profile.variables)


def check_corruption(profile: Profile, name: str) -> None:
    """A CureError when corruption ``name`` cannot be applied to prompts of this profile."""
    if name not in TEXT_CORRUPTIONS:
        raise CureError(f"unknown corruption {name!r}", f"use one of: {', '.join(TEXT_CORRUPTIONS)}")
    if name == "user" and not writes_user(profile):
        raise CureError(
            f"profile {profile.name} writes no user (its template uses neither user_id nor user_known), "
            "so the user corruption would change nothing",
            "use history or target",
        )


def _pool(name: str, samples: Samples, request: ForgetRequest) -> np.ndarray:
    train = samples.index(Samples.TRAIN)
    if name == "history":
        return np.unique(samples.history[train])
    pool = np.unique(samples.target[train])
    if request.kind == "item":
        pool = np.setdiff1d(pool, samples.item_codes(request.items))
    if len(pool) < 2:
        raise CureError(
            "no items are left to swap the target with", "use the history or user corruption for this request"
        )
    return pool


class _Matcher:
    """Draws same-length swaps for the slots of one corruption."""

    def __init__(self, encoder: ProfileEncoder, name: str, pool: np.ndarray, rng: np.random.Generator) -> None:
        self.encoder, self.name, self.pool, self.rng = encoder, name, pool, rng
        # which quote characters and backslashes a title holds: a template that quotes by
        # content (E2URec writes its history as a Python list) then quotes a swapped title alike
        self.quotes = np.array([("'" in t) + 2 * ('"' in t) + 4 * ("\\" in t) for t in encoder.item_text])

    def _swapped(self, slots: Slots) -> list[int]:
        return list(range(len(slots.history))) if self.name == "history" else [slots.target_slot]

    def candidates(self, slots: Slots, written: WrittenPrompt) -> dict[int, np.ndarray] | None:
        """Per swapped slot that the prompt writes, the pool's items of the clean item's length
        in that slot's context; ``None`` when a slot has none."""
        out = {}
        for slot in self._swapped(slots):
            spans = written.slot_spans(slot)
            if not spans:
                continue  # the profile does not write this slot: nothing to swap
            left, right = written.context(*spans[0], CONTEXT_CHARS)
            lengths = self.encoder.item_lengths(left, right)
            # never the sample's own items: its history and target (history), its target (target)
            own = slots.items if self.name == "history" else (slots.target,)
            clean = slots.items[slot]
            same = self.pool[
                (lengths[self.pool] == lengths[clean])
                & (self.quotes[self.pool] == self.quotes[clean])
                & ~np.isin(self.pool, own)
            ]
            if len(same) == 0:
                return None
            out[slot] = same
        return out

    def draw(self, candidates: dict[int, np.ndarray]) -> dict[int, int] | None:
        """One item per slot, no item twice; ``None`` when the slots run out of items."""
        chosen: dict[int, int] = {}
        for slot, items in sorted(candidates.items(), key=lambda pair: len(pair[1])):  # scarcest first
            free = items[~np.isin(items, list(chosen.values()))]
            if len(free) == 0:
                return None
            chosen[slot] = int(self.rng.choice(free))
        return chosen


def text_pairs(
    encoder: ProfileEncoder,
    name: str,
    samples: Samples,
    idx: np.ndarray,
    known: np.ndarray | None,
    request: ForgetRequest,
    rng: np.random.Generator,
) -> TextPairs:
    """Same-length clean/corrupted token ids of samples ``idx`` under corruption ``name``
    (seeded by ``rng``); see the module docstring for what each corruption swaps."""
    check_corruption(encoder.profile, name)
    known = np.ones(len(idx), bool) if known is None else known
    clean_slots = [encoder.slots(samples, int(i), bool(k)) for i, k in zip(idx, known, strict=True)]
    if name == "user":
        pairs = _unknown_user(encoder, clean_slots)
    else:
        matcher = _Matcher(encoder, name, _pool(name, samples, request), rng)
        pairs = [_swap(encoder, matcher, slots) for slots in clean_slots]
    kept = np.array([j for j, pair in enumerate(pairs) if pair is not None], dtype=np.int64)
    found = [pair for pair in pairs if pair is not None]
    return TextPairs(
        clean=[clean for _, clean, _ in found],
        corrupt=[corrupt for _, _, corrupt in found],
        kept=kept,
        dropped=len(idx) - len(kept),
        clean_slots=[clean_slots[j] for j in kept],
        corrupt_slots=[slots for slots, _, _ in found],
    )


def pair_batches(pairs: TextPairs, weight: torch.Tensor, size: int, pad_id: int) -> list[PromptBatch]:
    """The kept pairs, left padded into batches of ``size`` (``weight``: one per kept pair)."""
    return [
        PromptBatch.from_pairs(pairs.clean[i : i + size], pairs.corrupt[i : i + size], weight[i : i + size], pad_id)
        for i in range(0, len(pairs.kept), size)
    ]


_Pair = tuple[Slots, list[int], list[int]]  # corrupted slots, clean ids, corrupted ids


def _unknown_user(encoder: ProfileEncoder, clean_slots: list[Slots]) -> list[_Pair | None]:
    """Each prompt with its user written as unknown; ``None`` where that changes the length."""
    unknown = [replace(slots, user_known=False) for slots in clean_slots]
    clean = encoder.token_ids([encoder.write(slots) for slots in clean_slots])
    corrupt = encoder.token_ids([encoder.write(slots) for slots in unknown])
    return [(slots, a, b) if len(a) == len(b) else None for slots, a, b in zip(unknown, clean, corrupt, strict=True)]


def _swap(encoder: ProfileEncoder, matcher: _Matcher, slots: Slots) -> _Pair | None:
    """One clean prompt with its titles swapped for same-length ones, or ``None`` when no draw
    matches (or the prompt writes none of the slots to swap)."""
    written = encoder.written(slots)
    candidates = matcher.candidates(slots, written)
    if not candidates:
        return None
    (clean,) = encoder.token_ids([written.text])
    common = written.outside()
    for _ in range(MAX_DRAWS):
        chosen = matcher.draw(candidates)
        if chosen is None:
            return None
        swapped = slots.with_items(chosen)
        other = encoder.written(swapped)
        (corrupt,) = encoder.token_ids([other.text])
        if len(corrupt) == len(clean) and other.outside() == common:
            return swapped, clean, corrupt
    return None
