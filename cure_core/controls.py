"""Matched control sets: the null a forget-vs-retain difference must beat (method.md §6).

A control set is drawn from the retain set to look like the forget set in the way that
matters: for a user request, the training samples of as many random retained users; for an
item request, the retained samples of as many random other items (matched on the same scope);
for an interaction request, as many random retained samples. Draws ``0, 1, 2 …`` are disjoint
(consecutive chunks of one seeded permutation), so several of them give a spread.

Random retain *samples* are too optimistic a null for users: user groups differ from each
other several times more than random samples do (measured by the prototype, method.md §6).
"""

from __future__ import annotations

import numpy as np

from cure_core.data.samples import Samples
from cure_core.errors import CureError
from cure_core.requests import ForgetRequest, RequestSets


def _chunk(pool: np.ndarray, size: int, draw: int, seed: int, what: str) -> np.ndarray:
    order = np.random.default_rng(seed).permutation(pool)
    if (draw + 1) * size > len(order):
        raise CureError(
            f"control draw {draw} needs {(draw + 1) * size} {what} but the retain set has {len(order)}",
            "use fewer control draws or a smaller request",
        )
    return order[draw * size : (draw + 1) * size]


def _pool(request: ForgetRequest, samples: Samples, sets: RequestSets) -> tuple[np.ndarray, int, str]:
    """What a control draw is cut from, how many of it one draw takes, and what they are:
    retained users, other items (not the request's) or retained samples."""
    retain = sets.retain
    if request.kind == "user":
        return np.unique(samples.user[retain]), len(sets.forget_users), "users"
    if request.kind == "item":
        request_items = samples.item_codes(request.items)
        return np.setdiff1d(np.unique(samples.target[retain]), request_items), len(request_items), "items"
    return retain, len(sets.forget), "samples"


def max_control_draws(request: ForgetRequest, samples: Samples, sets: RequestSets) -> int:
    """How many disjoint matched control draws the retain set holds (e.g. 4 for 20% of users)."""
    pool, size, _ = _pool(request, samples, sets)
    return len(pool) // max(1, size)


def control_set(
    request: ForgetRequest, samples: Samples, sets: RequestSets, draw: int = 0, seed: int = 0
) -> np.ndarray:
    """Indices (into ``samples``, all in the retain set) of matched control draw ``draw``."""
    retain = sets.retain
    pool, size, what = _pool(request, samples, sets)
    chosen = _chunk(pool, size, draw, seed, what)
    if request.kind == "user":
        return retain[np.isin(samples.user[retain], chosen)]
    if request.kind == "item":
        covered = np.isin(samples.target[retain], chosen)
        if request.item_scope == "target_or_history":
            covered |= np.isin(samples.history[retain], chosen).any(axis=1)
        return retain[covered]
    return np.sort(chosen)
