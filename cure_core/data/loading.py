"""Readers for GroupLens ``ml-100k`` folders/zips and RecBole atomic files, and the default data.

All formats end as a :class:`RatingsDataset`, so any dataset with users, items, ratings,
timestamps and item titles goes through the same code path afterwards.
"""

from __future__ import annotations

import io
import logging
import re
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from cure_core.cache import atomic_write_bytes, cache_dir
from cure_core.data.checks import genre_flags, typed_ratings
from cure_core.data.dataset import ITEM_COLUMNS, RATING_COLUMNS, RatingsDataset
from cure_core.errors import CureError

RECBOLE_WHEEL = "recbole==1.2.1"
_RECBOLE_ML100K = "recbole/dataset_example/ml-100k/"
GROUPLENS_GENRES = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
]

Opener = Callable[[str], bytes]
log = logging.getLogger(__name__)


def load_dataset(source: str | Path | None = None) -> RatingsDataset:
    """Load ratings from ``source``: ``None``/``"ml-100k"`` for the default, or a path.

    A path may be a GroupLens folder or zip (``u.data``, ``u.item``, optional ``u.user``) or a
    folder or zip of RecBole atomic files (``*.inter``, ``*.item``, optional ``*.user``).
    """
    if source is None or str(source) == "ml-100k":
        return load_recbole(default_ml100k_dir(), name="ml-100k")
    path = Path(source).expanduser()
    if not path.exists():
        raise CureError(
            f"data path {path} does not exist",
            "give a GroupLens ml-100k folder/zip or RecBole atomic files, or omit --data for the default",
        )
    names, opener = _listing(path)
    base = {Path(n).name: n for n in names}
    if "u.data" in base:
        return _read_grouplens(base, opener, name=path.stem)
    if any(n.endswith(".inter") for n in base):
        return _read_recbole(base, opener, name=path.stem)
    raise CureError(
        f"{path} holds neither u.data (GroupLens) nor a .inter file (RecBole)",
        "point --data at the folder or zip that contains the rating file",
    )


def load_recbole(folder: Path, name: str) -> RatingsDataset:
    """Read a folder of RecBole atomic files."""
    names, opener = _listing(folder)
    return _read_recbole({Path(n).name: n for n in names}, opener, name=name)


def default_ml100k_dir() -> Path:
    """The MovieLens-100K atomic files, taken once from the ``recbole`` wheel on PyPI.

    The wheel is fetched with ``pip download --no-deps`` (recbole is never installed or
    imported) and the three files are copied out of it into ``cache/downloads/ml-100k``.
    """
    target = cache_dir("downloads", "ml-100k")
    wanted = ["ml-100k.inter", "ml-100k.item", "ml-100k.user"]
    if all((target / w).exists() for w in wanted):
        return target
    wheel_dir = cache_dir("downloads", "wheels")
    wheels = sorted(wheel_dir.glob("recbole-1.2.1-*.whl"))
    if not wheels:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheel_dir), RECBOLE_WHEEL]
        log.info("Fetching MovieLens-100K: %s", " ".join(cmd[2:]))
        result = subprocess.run(cmd, capture_output=True, text=True)
        wheels = sorted(wheel_dir.glob("recbole-1.2.1-*.whl"))
        if result.returncode != 0 or not wheels:
            raise CureError(
                f"could not download {RECBOLE_WHEEL} from PyPI ({result.stderr.strip()[-200:]})",
                "check access to PyPI, or pass --data with a local ml-100k folder or zip",
            )
    with zipfile.ZipFile(wheels[0]) as wheel:
        for w in wanted:
            atomic_write_bytes(target / w, wheel.read(_RECBOLE_ML100K + w))
    return target


def _listing(path: Path) -> tuple[list[str], Opener]:
    """File names under a folder or inside a zip, and a function that reads one of them."""
    if path.is_dir():
        names = [str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()]
        return names, lambda n: (path / n).read_bytes()
    if zipfile.is_zipfile(path):
        try:
            archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as err:
            raise CureError(
                f"{path} is a damaged zip ({err})", "download the zip again, or unpack it and pass the folder"
            ) from None

        def read(name: str) -> bytes:
            try:
                return archive.read(name)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as err:
                raise CureError(
                    f"{path}: member {name} is damaged ({err})",
                    "download the zip again, or unpack it and pass the folder",
                ) from None

        return archive.namelist(), read
    raise CureError(f"{path} is neither a folder nor a zip file", "give the data folder or its zip")


def _read_grouplens(base: dict[str, str], opener: Opener, name: str) -> RatingsDataset:
    if "u.item" not in base:
        raise CureError("GroupLens data has u.data but no u.item (titles)", "add u.item from the same ml-100k download")
    ratings = _parse(
        lambda: pd.read_csv(io.BytesIO(opener(base["u.data"])), sep="\t", header=None, names=RATING_COLUMNS, dtype=str),
        "u.data",
        "4 tab-separated columns: user, item, rating, timestamp",
    )
    raw_items = _parse(
        lambda: pd.read_csv(io.BytesIO(opener(base["u.item"])), sep="|", header=None, encoding="latin-1", dtype=str),
        "u.item",
        "pipe-separated: id|title (year)|date|video date|url|19 genre flags",
    )
    if raw_items.shape[1] < 5 + len(GROUPLENS_GENRES):
        raise CureError(
            f"u.item has {raw_items.shape[1]} columns, expected 24",
            "use the u.item file of the GroupLens ml-100k release",
        )
    flags = genre_flags(raw_items.iloc[:, 5 : 5 + len(GROUPLENS_GENRES)], "u.item").to_numpy()
    titles_years = raw_items[1].fillna("").map(_split_title_year)
    items = pd.DataFrame(
        {
            "item": raw_items[0],
            "title": [t for t, _ in titles_years],
            "year": [y for _, y in titles_years],
            "genres": [
                "|".join(g for g, f in zip(GROUPLENS_GENRES, row, strict=True) if f and g != "unknown") for row in flags
            ],
        }
    )
    users = None
    if "u.user" in base:
        users = _parse(
            lambda: pd.read_csv(io.BytesIO(opener(base["u.user"])), sep="|", header=None, dtype=str),
            "u.user",
            "pipe-separated: user id|age|gender|occupation|zip code",
        )
        if users.shape[1] != 5:
            raise CureError(
                f"u.user has {users.shape[1]} column(s), expected 5",
                "use the u.user file of the GroupLens ml-100k release (user id|age|gender|occupation|zip "
                "code), or leave it out",
            )
        users.columns = ["user", "age", "gender", "occupation", "zip"]
    return _finish(name, typed_ratings(ratings, "u.data", header_rows=0), items, users)


def _read_recbole(base: dict[str, str], opener: Opener, name: str) -> RatingsDataset:
    inter = next(n for n in base if n.endswith(".inter"))
    ratings = _parse(
        lambda: pd.read_csv(io.BytesIO(opener(base[inter])), sep="\t", dtype=str),
        inter,
        "a header row like user_id:token item_id:token rating:float timestamp:float",
    )
    ratings.columns = [c.split(":")[0] for c in ratings.columns]
    missing = {"user_id", "item_id", "rating", "timestamp"} - set(ratings.columns)
    if missing:
        raise CureError(
            f"{inter} lacks the column(s) {sorted(missing)}",
            "the .inter file needs user_id, item_id, rating and timestamp columns",
        )
    ratings = typed_ratings(
        ratings.rename(columns={"user_id": "user", "item_id": "item"})[RATING_COLUMNS], inter, header_rows=1
    )
    item_file = next((n for n in base if n.endswith(".item")), None)
    if item_file is None:
        raise CureError(f"RecBole data has {inter} but no .item file (titles)", "add the matching .item file")
    raw = _parse(
        lambda: pd.read_csv(io.BytesIO(opener(base[item_file])), sep="\t", dtype=str),
        item_file,
        "a tab-separated header with item_id and a title column",
    )
    raw.columns = [c.split(":")[0] for c in raw.columns]
    title_col = next((c for c in ("movie_title", "title", "book_title", "name") if c in raw.columns), None)
    if "item_id" not in raw.columns or title_col is None:
        raise CureError(
            f"{item_file} needs item_id and a title column (movie_title, title, ...)",
            "use RecBole atomic item files with titles",
        )
    year_col = next((c for c in ("release_year", "year") if c in raw.columns), None)
    genre_col = next((c for c in ("class", "genre", "genres") if c in raw.columns), None)
    items = pd.DataFrame(
        {
            "item": raw["item_id"],
            "title": raw[title_col].fillna(""),
            "year": raw[year_col].fillna("") if year_col else "",
            "genres": raw[genre_col].fillna("").map(_recbole_genres) if genre_col else "",
        }
    )
    users = None
    user_file = next((n for n in base if n.endswith(".user")), None)
    if user_file is not None:
        users = _parse(
            lambda: pd.read_csv(io.BytesIO(opener(base[user_file])), sep="\t", dtype=str),
            user_file,
            "a tab-separated header with user_id",
        )
        users.columns = [c.split(":")[0] for c in users.columns]
        if "user_id" not in users.columns:
            raise CureError(
                f"{user_file} has no user_id column",
                "give the .user file a header like user_id:token age:float, or leave it out",
            )
        users = users.rename(columns={"user_id": "user"})
    return _finish(name, ratings, items, users)


def _recbole_genres(joined: str) -> str:
    """RecBole separates genres by spaces (``Film-Noir`` and ``Children's`` survive); the
    placeholder genre ``unknown`` is dropped as in the GroupLens reader."""
    return "|".join(g for g in joined.split() if g and g != "unknown")


def _split_title_year(raw: str) -> tuple[str, str]:
    match = re.match(r"^(.*?)\s*\((\d{4})\)\s*$", raw)
    return (match.group(1), match.group(2)) if match else (raw, "")


def _parse(read: Callable[[], pd.DataFrame], what: str, expected: str) -> pd.DataFrame:
    try:
        return read()
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as err:
        raise CureError(f"cannot parse {what}: {str(err).splitlines()[0]}", f"the file must be {expected}") from None


def _finish(name: str, ratings: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame | None) -> RatingsDataset:
    """Check that there are ratings (typed by :func:`typed_ratings`) and add placeholder rows for untitled items."""
    if ratings.empty:
        raise CureError(f"{name}: the rating file has no rows", "check that the rating file is the full download")
    items = items.astype({"item": str, "title": str, "year": str, "genres": str}).drop_duplicates("item")
    untitled = sorted(set(ratings["item"]) - set(items["item"]))
    if untitled:
        items = pd.concat([items, pd.DataFrame({"item": untitled, "title": untitled, "year": "", "genres": ""})])
    return RatingsDataset(
        name=name, ratings=ratings.reset_index(drop=True), items=items[ITEM_COLUMNS].reset_index(drop=True), users=users
    )
