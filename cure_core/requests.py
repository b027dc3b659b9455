"""Forget requests (user-, item- and interaction-level) and the sets they define (method.md §2).

A request is saved as ``cache/requests/<id>.json`` and named by its id in every later step.
Its sets, all as sample indices:

- ``forget``: training samples the request covers. An interaction (user, item) covers every
  sample that carries that rating — as its target or inside its history — so no model keeps
  training on it; an item request covers the samples whose target is one of the items, and with
  scope ``target_or_history`` also those whose history holds one;
- ``retain``: every other training sample (Retrain trains on exactly these);
- ``valid``/``test``: validation/test samples of the retained users that the request does not cover;
- ``holdout``: training-split samples of the *holdout users* (never trained on by any model)
  chosen by the same rule: the non-members of membership inference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from cure_core.cache import atomic_write_json, cache_dir
from cure_core.cache_keys import cache_key
from cure_core.data.dataset import RatingsDataset
from cure_core.data.samples import Samples
from cure_core.errors import CureError
from cure_core.settings import Seed

DEFAULT_USER_FRACTION = 0.05


class ForgetRequest(BaseModel):
    """What to forget. Exactly one of ``users``, ``items``, ``interactions`` is used, by ``kind``."""

    kind: Literal["user", "item", "interaction"]
    data_hash: str
    description: str
    users: list[str] = Field(default_factory=list)
    items: list[str] = Field(default_factory=list)
    item_scope: Literal["target", "target_or_history"] = "target_or_history"
    interactions: list[tuple[str, str]] = Field(default_factory=list)
    seed: Seed | None = None

    @property
    def id(self) -> str:
        body = self.model_dump(exclude={"description"})
        if self.kind == "interaction":  # ids of the old rule (target only) must not name the new sets
            body["covers"] = "target_or_history"
        return f"{self.kind}-{cache_key('request', body)}"


@dataclass
class RequestSets:
    forget: np.ndarray
    retain: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    holdout: np.ndarray
    forget_users: np.ndarray  # user codes removed from the model's known users (user-level only)

    def sizes(self) -> dict[str, int]:
        return {name: len(getattr(self, name)) for name in ("forget", "retain", "valid", "test", "holdout")}


def trainable_users(samples: Samples) -> np.ndarray:
    """User codes with training samples that are not holdout users."""
    return np.setdiff1d(np.unique(samples.user[samples.split == Samples.TRAIN]), samples.holdout_users)


def parse_share(raw: str, where: str) -> float:
    """A share of users written as ``5%`` or ``0.05``, in (0, 1); ``where`` names the input in the error."""
    try:
        share = float(raw.strip().rstrip("%")) / (100 if raw.strip().endswith("%") else 1)
    except ValueError:
        raise CureError(f"{where} {raw!r} is not a share", "write it as 5% or 0.05") from None
    return _checked_fraction(share)


def _checked_fraction(fraction: float) -> float:
    if not 0 < fraction < 1:
        raise CureError(f"forget fraction {fraction:g} is outside (0, 1)", "give a share of users such as 5% or 0.05")
    return fraction


def user_request(
    dataset: RatingsDataset,
    samples: Samples,
    fraction: float | None = None,
    user_ids: list[str] | None = None,
    seed: int = 0,
) -> ForgetRequest:
    """Forget every training sample of some users: a seeded fraction of them, or given ids."""
    pool = trainable_users(samples)
    if user_ids:
        codes = samples.user_codes(user_ids)
        held = [samples.user_ids[c] for c in codes if c in set(samples.holdout_users.tolist())]
        if held:
            raise CureError(
                f"user(s) {', '.join(held[:5])} are holdout users that no model was trained on",
                "pick other users; holdout users are kept aside as membership-inference non-members",
            )
        chosen = np.unique(codes)
        description = f"{len(chosen)} given user(s)"
    else:
        fraction = _checked_fraction(DEFAULT_USER_FRACTION if fraction is None else fraction)
        n = max(1, round(fraction * len(pool)))
        chosen = np.sort(np.random.default_rng(seed).choice(pool, size=n, replace=False))
        description = f"{fraction * 100:.4g}% of users ({n}), seed {seed}"
    if len(chosen) >= len(pool):
        raise CureError("the request takes every trainable user, so nothing would be retained", "forget fewer users")
    return ForgetRequest(
        kind="user",
        data_hash=dataset.content_hash,
        description=description,
        users=[samples.user_ids[c] for c in chosen],
        seed=seed if not user_ids else None,
    )


def item_request(
    dataset: RatingsDataset,
    samples: Samples,
    item_ids: list[str] | None = None,
    genre: str | None = None,
    scope: str = "target_or_history",
) -> ForgetRequest:
    """Forget every sample whose target (or, by ``scope``, also history) holds chosen items."""
    if genre:
        item_ids = dataset.genre_items(genre)
        if not item_ids:
            known = (
                f"use one of: {', '.join(dataset.genres)}"
                if dataset.genres
                else "this dataset tags no genres; name items with --items"
            )
            raise CureError(f"no item has the genre {genre!r}", known)
        description = f"genre {genre} ({len(item_ids)} items, {scope})"
    elif item_ids:
        description = f"{len(set(item_ids))} given item(s) ({scope})"
    else:
        raise CureError("an item request needs items or a genre", "pass --items ID,ID or --genre NAME")
    codes = samples.item_codes(item_ids)
    if scope == "target":
        trained = _trained(samples)
        kept = trained & ~np.isin(samples.target, codes) & np.isin(samples.history, codes).any(axis=1)
        description += f"; {int(kept.sum())} retained training sample(s) still hold these items in their history"
    return ForgetRequest(
        kind="item",
        data_hash=dataset.content_hash,
        description=description,
        items=sorted(set(item_ids)),
        item_scope=scope,
    )  # type: ignore[arg-type]


def interaction_request(dataset: RatingsDataset, samples: Samples, pairs: list[tuple[str, str]]) -> ForgetRequest:
    """Forget chosen ratings (user, item): every sample that carries one of them, as its target
    or in its history (a user's earliest ratings occur only in histories). The description
    counts the training samples each way."""
    if not pairs:
        raise CureError(
            "an interaction request needs at least one (user, item) pair", "pass --interactions USER:ITEM,USER:ITEM"
        )
    blank = [f"{u}:{i}" for u, i in pairs if not u.strip() or not i.strip()]
    if blank:
        raise CureError(
            f"interaction {blank[0]!r} has a blank user or item id", "write each rating as USER:ITEM, e.g. 196:242"
        )
    pairs = sorted(set(pairs))
    as_target, in_history = _interaction_masks(pairs, samples)
    trained = _trained(samples)
    n_target, n_history = int((trained & as_target).sum()), int((trained & in_history & ~as_target).sum())
    description = (
        f"{len(pairs)} rating(s), carried by {n_target + n_history} training sample(s) ({n_target} as target, "
        f"{n_history} only in histories)"
    )
    return ForgetRequest(
        kind="interaction", data_hash=dataset.content_hash, description=description, interactions=pairs
    )


def request_sets(request: ForgetRequest, samples: Samples) -> RequestSets:
    """The index sets of a request; raises if the forget set is empty."""
    train = samples.split == Samples.TRAIN
    holdout_user = samples.is_holdout_user
    covered = _covered(request, samples)
    forget_users = samples.user_codes(request.users) if request.kind == "user" else np.array([], dtype=np.int64)
    removed_user = np.isin(samples.user, forget_users)
    forget = np.flatnonzero(train & ~holdout_user & covered)
    if len(forget) == 0:
        raise CureError(
            f"request {request.id} ({request.description}) covers no training sample",
            "choose users or items that occur in the training split",
        )
    retain = np.flatnonzero(train & ~holdout_user & ~covered)
    if len(retain) == 0:
        raise CureError(
            f"request {request.id} covers every training sample", "forget less so that something is retained"
        )
    keep = ~holdout_user & ~removed_user & ~covered
    # Non-members like the members: for items, holdout users' samples of the same items;
    # for users and interactions, all of the holdout users' training-split samples.
    holdout_rule = covered if request.kind == "item" else np.ones(len(samples), bool)
    return RequestSets(
        forget=forget,
        retain=retain,
        valid=np.flatnonzero((samples.split == Samples.VALID) & keep),
        test=np.flatnonzero((samples.split == Samples.TEST) & keep),
        holdout=np.flatnonzero(train & holdout_user & holdout_rule),
        forget_users=forget_users,
    )


def _covered(request: ForgetRequest, samples: Samples) -> np.ndarray:
    """Boolean mask of the samples the request's rule selects (any split, any user)."""
    if request.kind == "user":
        return np.isin(samples.user, samples.user_codes(request.users))
    if request.kind == "item":
        codes = samples.item_codes(request.items)
        mask = np.isin(samples.target, codes)
        if request.item_scope == "target_or_history":
            mask |= np.isin(samples.history, codes).any(axis=1)
        return mask
    as_target, in_history = _interaction_masks(request.interactions, samples)
    return as_target | in_history


def _trained(samples: Samples) -> np.ndarray:
    """Training samples of users a model trains on (not holdout users)."""
    return (samples.split == Samples.TRAIN) & ~samples.is_holdout_user


def _interaction_masks(pairs: list[tuple[str, str]], samples: Samples) -> tuple[np.ndarray, np.ndarray]:
    """Samples whose target is one of the ratings, and samples holding one in their history
    (a history only holds its own user's earlier ratings)."""
    users = samples.user_codes([u for u, _ in pairs])
    items = samples.item_codes([i for _, i in pairs])
    as_target = np.zeros(len(samples), dtype=bool)
    in_history = np.zeros(len(samples), dtype=bool)
    for user, item in zip(users, items, strict=True):
        mine = samples.user == user
        as_target |= mine & (samples.target == item)
        in_history |= mine & (samples.history == item).any(axis=1)
    return as_target, in_history


def save_request(request: ForgetRequest) -> str:
    atomic_write_json(cache_dir("requests") / f"{request.id}.json", request.model_dump())
    return request.id


def request_saved(request_id: str) -> bool:
    return (cache_dir("requests") / f"{request_id}.json").is_file()


def keep_request(request: ForgetRequest) -> ForgetRequest:
    """``request``, saved unless it already is: called where a result about it is written, so
    that it can be named by id later (its id hashes its content, so a saved one is never stale)."""
    if not request_saved(request.id):
        save_request(request)
    return request


def load_request(request_id: str) -> ForgetRequest:
    path = cache_dir("requests") / f"{request_id}.json"
    if not path.exists():
        known = sorted(p.stem for p in cache_dir("requests").glob("*.json"))
        raise CureError(
            f"no forget request with id {request_id!r}",
            f"create one with `cure forget` (saved ids: {', '.join(known) or 'none'})",
        )
    try:
        return ForgetRequest.model_validate_json(path.read_text())
    except (ValidationError, ValueError) as err:
        raise CureError(
            f"request file {path} is corrupt ({str(err).splitlines()[0]})",
            "delete it and recreate the request with `cure forget`",
        ) from None
