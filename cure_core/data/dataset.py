"""The in-memory shape every dataset is brought into, whatever file format it came from."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import pandas as pd

RATING_COLUMNS = ["user", "item", "rating", "timestamp"]
ITEM_COLUMNS = ["item", "title", "year", "genres"]


@dataclass
class RatingsDataset:
    """Explicit ratings with timestamps plus item metadata.

    ``ratings``: one row per rating, columns ``user`` and ``item`` (str ids as in the source
    files), ``rating`` (float), ``timestamp`` (int). ``items``: ``item``, ``title``, ``year``
    (str, may be empty) and ``genres`` (a ``|``-joined str, may be empty). Every rated item has
    a row in ``items``; items without a title in the source get their id as title.
    """

    name: str
    ratings: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame | None = None
    _hash: str | None = field(default=None, repr=False)

    @property
    def content_hash(self) -> str:
        """A short hash of ratings and item titles: models and requests are keyed by it."""
        if self._hash is None:
            digest = hashlib.sha256()
            digest.update(pd.util.hash_pandas_object(self.ratings[RATING_COLUMNS], index=False).values.tobytes())
            digest.update(pd.util.hash_pandas_object(self.items[["item", "title"]], index=False).values.tobytes())
            self._hash = digest.hexdigest()[:12]
        return self._hash

    def genre_items(self, genre: str) -> list[str]:
        """Ids of the items tagged with ``genre`` (case-insensitive)."""
        wanted = genre.strip().lower()
        mask = self.items["genres"].map(lambda g: wanted in [x.lower() for x in g.split("|") if x])
        return self.items.loc[mask, "item"].tolist()

    @property
    def genres(self) -> list[str]:
        """Every genre tag that occurs, sorted."""
        tags = {g for joined in self.items["genres"] for g in joined.split("|") if g}
        return sorted(tags)

    def titles(self) -> dict[str, str]:
        """Item id -> display title with year, e.g. ``Toy Story (1995)``."""
        return {
            row.item: f"{row.title} ({row.year})" if row.year else row.title
            for row in self.items.itertuples(index=False)
        }

    def recent_ratings(self, user_ids: list[str], last: int = 10, like_threshold: float = 3.0) -> pd.DataFrame:
        """One row per user: number of ratings and the ``last`` rated titles, newest last,
        each marked ``+`` (liked: rating > ``like_threshold``) or ``-``."""
        titles = self.titles()
        chosen = self.ratings[self.ratings["user"].isin(set(user_ids))].sort_values(
            ["user", "timestamp"], kind="stable"
        )
        rows = []
        for user, group in chosen.groupby("user", sort=False):
            tail = group.tail(last)
            history = "; ".join(
                f"{titles.get(i, i)} ({'+' if r > like_threshold else '-'})"
                for i, r in zip(tail["item"], tail["rating"], strict=True)
            )
            rows.append({"user": user, "ratings": len(group), f"last {last} ratings (oldest first)": history})
        return pd.DataFrame(rows)
