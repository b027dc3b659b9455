"""Corrupted prompts for circuit discovery on the recommender (method.md §4), pluggable.

A corruption turns the samples ``idx`` into counterfactual samples of the same length, and
says which users stay written with their own token. Registered corruptions:

- ``history``: the history (items and likes) of a random training sample of another user,
  same target;
- ``target``: the target replaced by a random item that is not among the request's items
  (items drawn uniformly from those that are a training target at least once);
- ``user``: the user token replaced by the unknown-user token.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cure_core.data.samples import Samples
from cure_core.errors import CureError
from cure_core.requests import ForgetRequest


@dataclass
class Corrupted:
    samples: Samples  # one row per corrupted prompt
    user_known: np.ndarray | None  # None: as the model knows them; False rows: unknown-user token


CorruptionFn = Callable[[Samples, np.ndarray, np.ndarray | None, ForgetRequest, np.random.Generator], Corrupted]


def _other_users_history(
    samples: Samples, idx: np.ndarray, known: np.ndarray | None, request: ForgetRequest, rng: np.random.Generator
) -> Corrupted:
    pool = samples.index(Samples.TRAIN)
    donors = rng.choice(pool, size=len(idx))
    for _ in range(20):  # redraw the few donors that belong to the same user
        same = samples.user[donors] == samples.user[idx]
        if not same.any():
            break
        donors[same] = rng.choice(pool, size=int(same.sum()))
    out = samples.take(idx)
    out.history, out.history_likes = samples.history[donors], samples.history_likes[donors]
    return Corrupted(out, known)


def _other_target(
    samples: Samples, idx: np.ndarray, known: np.ndarray | None, request: ForgetRequest, rng: np.random.Generator
) -> Corrupted:
    candidates = np.unique(samples.target[samples.index(Samples.TRAIN)])
    if request.kind == "item":
        candidates = np.setdiff1d(candidates, samples.item_codes(request.items))
    if len(candidates) < 2:
        raise CureError(
            "no items are left to swap the target with", "use the history or user corruption for this request"
        )
    targets = rng.choice(candidates, size=len(idx))
    for _ in range(20):
        same = targets == samples.target[idx]
        if not same.any():
            break
        targets[same] = rng.choice(candidates, size=int(same.sum()))
    out = samples.take(idx)
    out.target = targets
    return Corrupted(out, known)


def _unknown_user(
    samples: Samples, idx: np.ndarray, known: np.ndarray | None, request: ForgetRequest, rng: np.random.Generator
) -> Corrupted:
    return Corrupted(samples.take(idx), np.zeros(len(idx), dtype=bool))


CORRUPTIONS: dict[str, CorruptionFn] = {"history": _other_users_history, "target": _other_target, "user": _unknown_user}


def corrupt(
    name: str,
    samples: Samples,
    idx: np.ndarray,
    known: np.ndarray | None,
    request: ForgetRequest,
    rng: np.random.Generator,
) -> Corrupted:
    check_corruption(name)
    return CORRUPTIONS[name](samples, idx, known, request, rng)


def check_corruption(name: str) -> None:
    """A CureError naming the registered corruptions when ``name`` is not one."""
    if name not in CORRUPTIONS:
        raise CureError(f"unknown corruption {name!r}", f"use one of: {', '.join(CORRUPTIONS)}")
