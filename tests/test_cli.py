"""The ``cure`` command on data given by path (GroupLens layout, synthetic content)."""

import json

import pytest

from cure_core import cli
from tests.test_data import write_grouplens


@pytest.fixture
def data_dir(tmp_path, synthetic):
    return str(write_grouplens(tmp_path / "ml", synthetic))


def run(capsys, *argv):
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_data_summary(capsys, data_dir):
    code, out, _ = run(capsys, "data", "--data", data_dir)
    assert code == 0
    assert "users: 100" in " ".join(out.split())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["forget", "--users", "150%"], "outside (0, 1)"),
        (["forget", "--users", "lots"], "is not a share"),
        (["forget", "--user-ids", "0,424242"], "unknown user id(s): 0, 424242"),
        (["forget", "--interactions", "1-2"], "is not USER:ITEM"),
        (["forget", "--genre", "Polka"], "no item has the genre"),
        (["evaluate", "--request", "user-deadbeef"], "no forget request"),
        (["train", "--retrain", "nope"], "no forget request"),
    ],
)
def test_bad_input_is_one_line_with_a_fix(capsys, data_dir, argv, message):
    code, _, err = run(capsys, *argv, "--data", data_dir)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "fix:" in lines[0], err
    assert "Traceback" not in err


def test_missing_data_path(capsys, tmp_path):
    code, _, err = run(capsys, "data", "--data", str(tmp_path / "missing"))
    assert code == 2 and "does not exist" in err


def test_forget_then_evaluate_json(capsys, data_dir, monkeypatch):
    from tests.conftest import TINY_RECIPE

    monkeypatch.setattr("cure_core.workspace.Recipe", lambda: TINY_RECIPE)
    code, out, _ = run(capsys, "forget", "--users", "10%", "--seed", "1", "--data", data_dir)
    assert code == 0
    request_id = out.split()[1].rstrip(":")
    code, out, _ = run(capsys, "evaluate", "--request", request_id, "--json", "--data", data_dir)
    assert code == 0
    report = json.loads(out)
    for key in (
        "test_auc",
        "forget_auc",
        "retrain_forget_auc",
        "mia_auc",
        "retrain_mia_auc",
        "jsd_to_retrain",
        "privleak",
    ):
        assert key in report
    assert report["request"] == request_id
    assert 0 <= report["mia_auc"] <= 1
