import zipfile

import numpy as np
import pandas as pd
import pytest

from cure_core.data import Samples, SplitConfig, build_samples, load_dataset, summarize
from cure_core.data.loading import GROUPLENS_GENRES
from cure_core.errors import CureError


def write_grouplens(folder, dataset):
    folder.mkdir(parents=True, exist_ok=True)
    dataset.ratings.astype({"rating": int}).to_csv(folder / "u.data", sep="\t", header=False, index=False)
    lines = []
    for row in dataset.items.itertuples(index=False):
        flags = ["1" if g in row.genres.split("|") else "0" for g in GROUPLENS_GENRES]
        lines.append("|".join([row.item, f"{row.title} ({row.year})", "01-Jan-1995", "", "http://x", *flags]))
    (folder / "u.item").write_text("\n".join(lines) + "\n", encoding="latin-1")
    return folder


def write_recbole(folder, dataset):
    folder.mkdir(parents=True, exist_ok=True)
    r = dataset.ratings.rename(
        columns={
            "user": "user_id:token",
            "item": "item_id:token",
            "rating": "rating:float",
            "timestamp": "timestamp:float",
        }
    )
    r.to_csv(folder / "x.inter", sep="\t", index=False)
    items = pd.DataFrame(
        {
            "item_id:token": dataset.items["item"],
            "movie_title:token_seq": dataset.items["title"],
            "release_year:token": dataset.items["year"],
            "class:token_seq": dataset.items["genres"].str.replace("|", " "),
        }
    )
    items.to_csv(folder / "x.item", sep="\t", index=False)
    return folder


def test_samples_follow_time_and_split_per_user(synthetic, synthetic_samples):
    s = synthetic_samples
    k = s.config.history_len
    counts = synthetic.ratings.groupby("user").size()
    for code, user in enumerate(s.user_ids):
        mine = np.flatnonzero(s.user == code)
        assert len(mine) == counts[user] - k
        times = {split: s.timestamp[mine][s.split[mine] == split] for split in (0, 1, 2)}
        assert times[0].max() <= times[1].min() <= times[1].max() <= times[2].min()
    # labels are rating > 3 of the target rating
    ratings = synthetic.ratings.iloc[s.rating_row]
    np.testing.assert_array_equal(s.label, (ratings["rating"].to_numpy() > 3).astype(np.int8))


def test_history_is_the_previous_k_ratings(synthetic, synthetic_samples):
    s = synthetic_samples
    i = 5
    user = s.user_ids[s.user[i]]
    mine = synthetic.ratings[synthetic.ratings.user == user].sort_values("timestamp", kind="stable")
    pos = list(mine.index).index(s.rating_row[i])
    expected = [s.item_ids.index(it) for it in mine["item"].iloc[pos - s.config.history_len : pos]]
    assert s.history[i].tolist() == expected


def test_holdout_users_are_seeded_and_excluded(synthetic):
    a, b = build_samples(synthetic, SplitConfig(seed=1)), build_samples(synthetic, SplitConfig(seed=1))
    np.testing.assert_array_equal(a.holdout_users, b.holdout_users)
    assert len(a.holdout_users) == round(0.05 * 100)
    assert not np.isin(a.user[a.index(Samples.TRAIN)], a.holdout_users).any()


def test_grouplens_folder_zip_and_recbole_load_the_same(tmp_path, synthetic):
    gl = write_grouplens(tmp_path / "gl", synthetic)
    rb = write_recbole(tmp_path / "rb", synthetic)
    zipped = tmp_path / "gl.zip"
    with zipfile.ZipFile(zipped, "w") as z:
        for f in gl.iterdir():
            z.write(f, f"ml-100k/{f.name}")
    loaded = [load_dataset(p) for p in (gl, zipped, rb)]
    assert len({d.content_hash for d in loaded}) == 1
    assert loaded[0].items.set_index("item").loc["1", "title"] == "Synthetic Movie 1"
    assert summarize(loaded[0], build_samples(loaded[0]))["ratings"] == len(synthetic.ratings)


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda f: (f / "u.item").unlink(), "no u.item"),
        (lambda f: (f / "u.data").write_text("1\t2\tfive\t100\n"), "non-numeric rating"),
        (lambda f: (f / "u.data").write_text(""), "has no rows"),
        (lambda f: (f / "u.item").write_text("1|Toy\n"), "expected 24"),
    ],
)
def test_malformed_files_give_one_line_errors(tmp_path, synthetic, breakage, message):
    folder = write_grouplens(tmp_path / "gl", synthetic)
    breakage(folder)
    with pytest.raises(CureError, match=message) as info:
        load_dataset(folder)
    assert "\n" not in str(info.value) and "fix:" in str(info.value)


def test_missing_or_unknown_paths(tmp_path):
    with pytest.raises(CureError, match="does not exist"):
        load_dataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CureError, match=r"neither u\.data"):
        load_dataset(tmp_path / "empty")


def test_genres_and_titles(synthetic):
    assert synthetic.genres == ["Genre0", "Genre1", "Genre2", "Genre3"]
    items = synthetic.genre_items("genre1")
    assert items and all(synthetic.items.set_index("item").loc[i, "genres"] == "Genre1" for i in items)
    assert synthetic.titles()["1"].startswith("Synthetic Movie 1 (")
