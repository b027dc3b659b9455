"""Checks of what a rating file holds, each failing with one line that names file, row and fix.

Rows are counted as a text editor shows them (the first line is row 1, a header included).
"""

from __future__ import annotations

import pandas as pd

from cure_core.errors import CureError

RATING_RANGE = (0.5, 5.0)
"""A five-star scale (half stars allowed): the like rule ``rating > 3`` assumes it."""


def typed_ratings(ratings: pd.DataFrame, file: str, header_rows: int) -> pd.DataFrame:
    """``user``/``item`` as stripped strings, ``rating`` float, ``timestamp`` int64, after
    checking every cell: no blank ids, numeric ratings on the five-star scale, integer
    non-negative timestamps, one rating per (user, item)."""
    ratings = ratings.dropna(how="all")
    row = ratings.index.to_series() + 1 + header_rows
    user = ratings["user"].fillna("").astype(str).str.strip()
    item = ratings["item"].fillna("").astype(str).str.strip()
    _first_bad(
        user.eq("") | item.eq(""),
        row,
        file,
        "has a blank user or item id",
        "give every rating a user id and an item id",
    )
    rating = pd.to_numeric(ratings["rating"], errors="coerce")
    _first_bad(
        rating.isna(),
        row,
        file,
        "has an empty or non-numeric rating",
        "give every row a number of stars",
        values=ratings["rating"],
    )
    low, high = RATING_RANGE
    _first_bad(
        ~rating.between(low, high),
        row,
        file,
        f"has a rating outside {low:g}–{high:g}",
        f"ratings must be stars from {low:g} to {high:g}",
        values=rating,
    )
    timestamp = pd.to_numeric(ratings["timestamp"], errors="coerce")
    _first_bad(
        timestamp.isna(),
        row,
        file,
        "has an empty or non-numeric timestamp",
        "timestamps must be seconds since 1970",
        values=ratings["timestamp"],
    )
    _first_bad(
        timestamp < 0,
        row,
        file,
        "has a negative timestamp",
        "timestamps must be seconds since 1970 (0 or more)",
        values=timestamp,
    )
    pair = user + "\t" + item
    again = pair.duplicated(keep="first")
    if again.any():
        at = again.to_numpy().argmax()
        first = pair.iloc[:at].eq(pair.iloc[at]).to_numpy().argmax()
        raise CureError(
            f"{file} row {row.iloc[at]}: user {user.iloc[at]} rated item {item.iloc[at]} again (first at "
            f"row {row.iloc[first]}); {int(again.sum())} repeated rating(s) in all",
            "keep one rating per user and item (e.g. the latest)",
        )
    return ratings.assign(
        user=user, item=item, rating=rating.astype(float), timestamp=timestamp.astype("int64")
    ).reset_index(drop=True)


def genre_flags(flags: pd.DataFrame, file: str) -> pd.DataFrame:
    """GroupLens genre columns as 0/1 integers, or one error naming the first bad row."""
    numeric = flags.apply(pd.to_numeric, errors="coerce")
    bad = ~numeric.isin([0, 1]).all(axis=1)
    _first_bad(
        bad,
        flags.index.to_series() + 1,
        file,
        "has a genre flag that is not 0 or 1",
        "each of the 19 genre columns must be 0 or 1",
    )
    return numeric.astype(int)


def _first_bad(
    mask: pd.Series, row: pd.Series, file: str, problem: str, fix: str, values: pd.Series | None = None
) -> None:
    if mask.any():
        at = mask.to_numpy().argmax()
        value = values.iloc[at] if values is not None else None
        shown = "" if value is None else f" ({value!r})" if isinstance(value, str) else f" ({value:g})"
        raise CureError(f"{file} row {row.iloc[at]} {problem}{shown}; {int(mask.sum())} such row(s)", fix)
