"""The app's home page renders on given data while its models train in the background."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cure_core.jobs import cancel_all
from tests.test_data import write_grouplens

HOME = str(Path(__file__).resolve().parent.parent / "app" / "Home.py")


@pytest.fixture(autouse=True)
def stop_background_jobs():
    """The page starts training in a thread; stop it so it cannot touch later tests' RNG."""
    yield
    cancel_all()


def test_home_page_lists_dataset_and_default_request(tmp_path, synthetic, monkeypatch):
    monkeypatch.setenv("CURE_DATA", str(write_grouplens(tmp_path / "ml", synthetic)))
    at = AppTest.from_file(HOME, default_timeout=60).run()
    assert not at.exception
    assert at.title[0].value == "CURE Studio"
    assert any("user-" in m.value for m in at.markdown), [m.value for m in at.markdown]
    assert len(at.dataframe) >= 2  # dataset summary and the request's set sizes
    assert not at.error
