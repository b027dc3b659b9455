"""A seeded synthetic ratings dataset with planted preferences, in the MovieLens shape.

Each item has one genre and a quality; each user a taste per genre. A rating is high when taste
plus quality plus noise is high, so a model can learn both per-item and per-user signal. Used by
the fast tests; never a stand-in for reported results.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cure_core.data.dataset import RatingsDataset


def make_synthetic(
    n_users: int = 60,
    n_items: int = 80,
    ratings_per_user: tuple[int, int] = (20, 40),
    n_genres: int = 4,
    seed: int = 0,
) -> RatingsDataset:
    rng = np.random.default_rng(seed)
    genre_names = [f"Genre{g}" for g in range(n_genres)]
    item_genre = rng.integers(0, n_genres, size=n_items)
    quality = rng.normal(0, 1, size=n_items)
    taste = rng.normal(0, 2.0, size=(n_users, n_genres))
    rows = []
    for u in range(n_users):
        n = int(rng.integers(ratings_per_user[0], ratings_per_user[1] + 1))
        items = rng.choice(n_items, size=min(n, n_items), replace=False)
        score = taste[u, item_genre[items]] + quality[items] + rng.normal(0, 0.3, size=len(items))
        stars = np.clip(np.round(3.5 + score), 1, 5)
        times = 1_000_000 + u * 10 + np.sort(rng.choice(10_000_000, size=len(items), replace=False))
        rows += [(str(u + 1), str(i + 1), float(s), int(t)) for i, s, t in zip(items, stars, times, strict=True)]
    ratings = pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])
    items = pd.DataFrame(
        {
            "item": [str(i + 1) for i in range(n_items)],
            "title": [f"Synthetic Movie {i + 1}" for i in range(n_items)],
            "year": [str(1980 + i % 20) for i in range(n_items)],
            "genres": [genre_names[g] for g in item_genre],
        }
    )
    return RatingsDataset(name=f"synthetic-{seed}", ratings=ratings, items=items)
