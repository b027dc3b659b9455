"""``cure forget --export``: a request's sets as TALLRec / E2URec training data — every record the
profile's prompt as that project rebuilds it, one record per sample of each set, the forget
users' samples only in the forget file, and bad targets refused before any work."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from cure_core import cli
from cure_core.data import RatingsDataset
from cure_core.profiles import PromptWriter, load_profile
from cure_core.requests import user_request
from cure_core.set_export import SETS, SetExporter
from cure_core.workspace import Workspace
from tests.test_cli_bad_input import assert_one_error_line, written
from tests.test_data import write_grouplens
from tests.test_profiles import ALPACA


def _load(folder):
    return {name: json.loads((folder / f"{name}.json").read_text()) for name in SETS}, json.loads(
        (folder / "manifest.json").read_text()
    )


def _check_export(folder, ws, request, fmt: str, fields: set[str], rebuild) -> None:
    """Records per set in sample order: the profile's prompt rebuilt by the project's rule, the
    label as "Yes."/"No.", the manifest's ratings those of the samples."""
    sets = ws.data.sets(request)
    records, manifest = _load(folder)
    writer = PromptWriter(load_profile(fmt), ws.data.dataset, ws.data.samples)
    s = ws.data.samples
    assert manifest["format"] == fmt and manifest["request"]["id"] == request.id
    for name in SETS:
        indices = getattr(sets, name)
        assert len(records[name]) == len(indices) == manifest["sets"][name]["records"] > 0
        assert manifest["sets"][name]["ratings"] == [
            f"{s.user_ids[s.user[i]]}:{s.item_ids[s.target[i]]}" for i in indices
        ]
        for record, i in zip(records[name], indices, strict=True):
            assert set(record) == fields
            assert rebuild(record) == writer.prompt(s, int(i))
            assert record["output"] == ("Yes." if s.label[i] else "No.")
    forget_users = set(request.users)
    users = {name: {r.split(":")[0] for r in manifest["sets"][name]["ratings"]} for name in SETS}
    assert users["forget"] == forget_users
    assert not forget_users & (users["retain"] | users["valid"] | users["test"])


def test_tallrec_export_of_the_default_request(capsys, tmp_path, synthetic):
    data = write_grouplens(tmp_path / "ml", synthetic)
    out = tmp_path / "export"
    code = cli.main(["forget", "--data", str(data), "--export", "tallrec", str(out)])
    assert code == 0, capsys.readouterr().err
    ws = Workspace.open(data=data)
    request = ws.data.default_request()  # `cure forget` without a rule: 5% of users, seed 0
    assert request.id in capsys.readouterr().out
    _check_export(
        out,
        ws,
        request,
        "tallrec",
        {"instruction", "input", "output"},
        lambda r: ALPACA.format(instruction=r["instruction"], input=r["input"]),
    )


def test_e2urec_export(tmp_path, synthetic):
    users = pd.DataFrame(
        {
            "user": sorted(synthetic.ratings["user"].unique(), key=int),
            "age": "30",
            "gender": "F",
            "occupation": "writer",
        }
    )
    users.loc[::2, "gender"] = "M"
    dataset = RatingsDataset(name="synthetic-users", ratings=synthetic.ratings, items=synthetic.items, users=users)
    ws = Workspace.open(dataset=dataset)
    request = user_request(ws.data.dataset, ws.data.samples, fraction=0.1, seed=3)
    counts = SetExporter("e2urec", ws.data.dataset, ws.data.samples).write(
        request, ws.data.sets(request), tmp_path / "e2urec"
    )
    assert counts == {name: n for name, n in ws.data.sets(request).sizes().items() if name in SETS}
    _check_export(tmp_path / "e2urec", ws, request, "e2urec", {"input", "output"}, lambda r: r["input"] + "\n")


@pytest.mark.parametrize("target", ["non-empty folder", "file"])
def test_export_target_is_refused_before_work(capsys, isolated_cache, tmp_path, synthetic, target):
    data = write_grouplens(tmp_path / "ml", synthetic)
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("the user's")
    path = folder if target == "non-empty folder" else folder / "notes.txt"
    code = cli.main(["forget", "--data", str(data), "--export", "tallrec", str(path)])
    assert_one_error_line(
        code, capsys.readouterr().err, "is not empty" if target == "non-empty folder" else "is a file"
    )
    assert written(isolated_cache) == []
    assert [p.name for p in folder.iterdir()] == ["notes.txt"] and (folder / "notes.txt").read_text() == "the user's"


def test_e2urec_export_without_user_fields_saves_nothing(capsys, isolated_cache, tmp_path, synthetic):
    data = write_grouplens(tmp_path / "ml", synthetic)  # no u.user
    code = cli.main(["forget", "--data", str(data), "--export", "e2urec", str(tmp_path / "out")])
    assert_one_error_line(code, capsys.readouterr().err, "gender, age, occupation")
    assert written(isolated_cache) == [] and not (tmp_path / "out").exists()


@pytest.mark.integration
def test_tallrec_export_on_movielens(capsys, tmp_path):
    """The default request on MovieLens-100K: the retain set as TALLRec records, none of a forget user's."""
    out = tmp_path / "export"
    assert cli.main(["forget", "--export", "tallrec", str(out)]) == 0, capsys.readouterr().err
    ws = Workspace.open()
    request = ws.data.default_request()
    sets = ws.data.sets(request)
    records, manifest = _load(out)
    assert {name: len(records[name]) for name in SETS} == {name: len(getattr(sets, name)) for name in SETS}
    assert all(set(r) == {"instruction", "input", "output"} for r in records["retain"])
    assert {r["output"] for r in records["retain"]} == {"Yes.", "No."}
    retained_users = {r.split(":")[0] for r in manifest["sets"]["retain"]["ratings"]}
    assert retained_users.isdisjoint(request.users)
