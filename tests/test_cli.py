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


def test_missing_data_path(capsys, tmp_path):
    code, _, err = run(capsys, "data", "--data", str(tmp_path / "missing"))
    assert code == 2 and "does not exist" in err


def test_forget_then_evaluate_json(capsys, data_dir, monkeypatch):
    from tests.tiny_recipes import TINY_RECIPE

    monkeypatch.setattr("cure_core.model.backends.item.Recipe", lambda: TINY_RECIPE)
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
