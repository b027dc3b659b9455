"""TALLRec-style samples (history of K rated items -> will the user like the target?) and splits.

Conventions (method.md §1): like = rating > 3; per user, samples follow time order and the last
ones go to validation and test, so nothing a model trains on comes after what it is tested on
for the same user. A seeded set of *holdout users* is never trained on by any model: their
samples are the non-members of membership inference and the fallback-user check.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from cure_core.data.dataset import RatingsDataset
from cure_core.errors import CureError
from cure_core.settings import Seed

LIKE_THRESHOLD = 3.0


class SplitConfig(BaseModel):
    """How samples are built and split; part of every model's cache key."""

    history_len: int = Field(10, ge=1, le=50, description="K: rated items shown before the target")
    valid_frac: float = Field(0.1, gt=0, lt=0.5, description="share of each user's latest samples for validation")
    test_frac: float = Field(0.1, gt=0, lt=0.5, description="share of each user's latest samples for test")
    holdout_user_frac: float = Field(0.05, ge=0, lt=0.5, description="users never trained on (MIA non-members)")
    seed: Seed = 0


@dataclass
class Samples:
    """All samples of a dataset as parallel arrays (N samples, K history items).

    ``user``/``history``/``target`` hold integer codes into ``user_ids``/``item_ids``;
    ``rating_row`` is the row of the target rating in ``RatingsDataset.ratings``.
    ``split`` is 0 = train, 1 = valid, 2 = test.
    """

    user_ids: list[str]
    item_ids: list[str]
    user: np.ndarray  # [N] int
    history: np.ndarray  # [N, K] int
    history_likes: np.ndarray  # [N, K] int8 (1 = liked)
    target: np.ndarray  # [N] int
    label: np.ndarray  # [N] int8 (1 = liked)
    timestamp: np.ndarray  # [N] int64
    rating_row: np.ndarray  # [N] int64
    split: np.ndarray  # [N] int8
    holdout_users: np.ndarray  # [n_holdout] int codes of users never trained on
    config: SplitConfig

    TRAIN, VALID, TEST = 0, 1, 2

    def __len__(self) -> int:
        return len(self.target)

    @property
    def is_holdout_user(self) -> np.ndarray:
        return np.isin(self.user, self.holdout_users)

    def index(self, split: int, include_holdout: bool = False) -> np.ndarray:
        """Indices of one split, without holdout users unless asked."""
        mask = self.split == split
        if not include_holdout:
            mask &= ~self.is_holdout_user
        return np.flatnonzero(mask)

    def take(self, idx: np.ndarray) -> Samples:
        """The samples ``idx`` as their own ``Samples`` (same users, items and config)."""
        per_sample = ("user", "history", "history_likes", "target", "label", "timestamp", "rating_row", "split")
        return replace(self, **{name: getattr(self, name)[idx] for name in per_sample})

    def user_codes(self, raw_ids: list[str]) -> np.ndarray:
        """Integer codes of raw user ids; unknown ids raise a CureError naming them."""
        lookup = {u: i for i, u in enumerate(self.user_ids)}
        unknown = [u for u in raw_ids if u not in lookup]
        if unknown:
            shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            raise CureError(
                f"unknown user id(s): {shown}",
                f"use ids from the dataset ({self.user_ids[0]} .. {self.user_ids[-1]}); `cure data` lists the range",
            )
        return np.array([lookup[u] for u in raw_ids], dtype=np.int64)

    def item_codes(self, raw_ids: list[str]) -> np.ndarray:
        lookup = {it: i for i, it in enumerate(self.item_ids)}
        unknown = [it for it in raw_ids if it not in lookup]
        if unknown:
            raise CureError(f"unknown item id(s): {', '.join(unknown[:5])}", "use item ids that occur in the ratings")
        return np.array([lookup[it] for it in raw_ids], dtype=np.int64)


def build_samples(dataset: RatingsDataset, config: SplitConfig | None = None) -> Samples:
    """Slide a window of K ratings over each user's time-ordered ratings."""
    config = config or SplitConfig()
    k = config.history_len
    ratings = dataset.ratings
    user_ids = sorted(ratings["user"].unique(), key=_natural_key)
    item_ids = sorted(set(dataset.items["item"]) | set(ratings["item"]), key=_natural_key)
    user_code = {u: i for i, u in enumerate(user_ids)}
    item_code = {it: i for i, it in enumerate(item_ids)}
    frame = pd.DataFrame(
        {
            "u": ratings["user"].map(user_code).to_numpy(),
            "i": ratings["item"].map(item_code).to_numpy(),
            "like": (ratings["rating"] > LIKE_THRESHOLD).to_numpy().astype(np.int8),
            "t": ratings["timestamp"].to_numpy(),
            "row": np.arange(len(ratings)),
        }
    ).sort_values(["u", "t", "row"], kind="stable")
    parts: dict[str, list[np.ndarray]] = {
        name: [] for name in ("user", "history", "hlike", "target", "label", "t", "row", "split")
    }
    for u, group in frame.groupby("u", sort=True):
        n = len(group) - k
        if n < 3:  # too short for one train, one valid and one test sample
            continue
        items = group["i"].to_numpy()
        likes = group["like"].to_numpy()
        windows = np.lib.stride_tricks.sliding_window_view(items, k)[:n]
        like_windows = np.lib.stride_tricks.sliding_window_view(likes, k)[:n]
        n_test = max(1, round(config.test_frac * n))
        n_valid = max(1, round(config.valid_frac * n))
        split = np.zeros(n, dtype=np.int8)
        split[n - n_test - n_valid : n - n_test] = Samples.VALID
        split[n - n_test :] = Samples.TEST
        parts["user"].append(np.full(n, u))
        parts["history"].append(windows)
        parts["hlike"].append(like_windows)
        parts["target"].append(items[k:])
        parts["label"].append(likes[k:])
        parts["t"].append(group["t"].to_numpy()[k:])
        parts["row"].append(group["row"].to_numpy()[k:])
        parts["split"].append(split)
    if not parts["user"]:
        raise CureError(
            f"{dataset.name}: no user has more than {k + 2} ratings",
            f"use a smaller history length than {k} or a denser dataset",
        )
    users_present = np.unique(np.concatenate(parts["user"]))
    rng = np.random.default_rng(config.seed)
    n_holdout = round(config.holdout_user_frac * len(users_present))
    holdout = (
        np.sort(rng.choice(users_present, size=n_holdout, replace=False)) if n_holdout else np.array([], dtype=np.int64)
    )
    return Samples(
        user_ids=list(user_ids),
        item_ids=list(item_ids),
        user=np.concatenate(parts["user"]).astype(np.int64),
        history=np.concatenate(parts["history"]).astype(np.int64),
        history_likes=np.concatenate(parts["hlike"]).astype(np.int8),
        target=np.concatenate(parts["target"]).astype(np.int64),
        label=np.concatenate(parts["label"]).astype(np.int8),
        timestamp=np.concatenate(parts["t"]).astype(np.int64),
        rating_row=np.concatenate(parts["row"]).astype(np.int64),
        split=np.concatenate(parts["split"]),
        holdout_users=holdout.astype(np.int64),
        config=config,
    )


def summarize(dataset: RatingsDataset, samples: Samples) -> dict[str, object]:
    """The numbers ``cure data`` prints: sizes, samples per split and positive rates."""
    holdout = samples.is_holdout_user
    summary: dict[str, object] = {
        "dataset": dataset.name,
        "data_hash": dataset.content_hash,
        "users": int(dataset.ratings["user"].nunique()),
        "items": int(dataset.ratings["item"].nunique()),
        "ratings": len(dataset.ratings),
        "like_rate_all_ratings": round(float((dataset.ratings["rating"] > LIKE_THRESHOLD).mean()), 4),
        "history_len": samples.config.history_len,
        "users_with_samples": len(np.unique(samples.user)),
        "holdout_users": len(samples.holdout_users),
        "samples": len(samples),
    }
    for name, code in (("train", Samples.TRAIN), ("valid", Samples.VALID), ("test", Samples.TEST)):
        mask = (samples.split == code) & ~holdout
        summary[f"{name}_samples"] = int(mask.sum())
        summary[f"{name}_positive_rate"] = round(float(samples.label[mask].mean()), 4) if mask.any() else None
    summary["holdout_samples"] = int(((samples.split == Samples.TRAIN) & holdout).sum())
    return summary


def _natural_key(raw: str) -> tuple[int, int | str]:
    """Numeric ids sort as numbers, others as strings after them."""
    return (0, int(raw)) if raw.isdigit() else (1, raw)
