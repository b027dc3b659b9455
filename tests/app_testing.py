"""What the app's tests share: the pages' files, opening a page once its models are loaded, and
the check that each of its errors is one line."""

import time
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from cure_core.jobs import cancel_all
from tests.test_data import write_grouplens

HOME = str(Path(__file__).resolve().parent.parent / "app" / "Home.py")
APP_DIR = str(Path(HOME).parent)  # `streamlit run app/Home.py` puts app/ on the path for its pages
CIRCUITS = str(Path(APP_DIR) / "pages" / "1_Circuits.py")
GROUPS_PAGE = str(Path(APP_DIR) / "pages" / "2_Module_groups.py")
UNLEARNING_PAGE = str(Path(APP_DIR) / "pages" / "3_Unlearning.py")
REPORT_PAGE = str(Path(APP_DIR) / "pages" / "4_Report.py")
USER_PAGES = {"Home": HOME, "Circuits": CIRCUITS, "Module groups": GROUPS_PAGE, "Unlearning": UNLEARNING_PAGE}


@pytest.fixture(autouse=True)
def stop_background_jobs():
    """The page starts training in a thread; stop it so it cannot touch later tests' RNG, and
    drop Streamlit's process-wide caches so the next test starts like a fresh server."""
    yield
    cancel_all()
    st.cache_resource.clear()
    st.cache_data.clear()


def open_page(page: str, tmp_path, synthetic, monkeypatch) -> AppTest:
    """An analysis page on synthetic data with the tiny model already trained (what the Home
    page's background job does first), run until the shared job has loaded the models."""
    from cure_core.workspace import Workspace
    from tests.tiny_recipes import TINY_RECIPE

    data = str(write_grouplens(tmp_path / "ml", synthetic))
    monkeypatch.setenv("CURE_DATA", data)
    monkeypatch.setattr("cure_core.model.backends.item.Recipe", lambda: TINY_RECIPE)
    monkeypatch.syspath_prepend(APP_DIR)
    ws = Workspace.open(data=data, recipe=TINY_RECIPE)
    ws.models.ensure_models(ws.data.default_request(), quiet=True)
    at = AppTest.from_file(page, default_timeout=120)
    for _ in range(50):
        at.run()
        if not any("still training" in i.value for i in at.info):
            break
        time.sleep(0.2)
    return at


def open_user_page(page: str, tmp_path, synthetic, monkeypatch, checkpoint, state=None) -> AppTest:
    """A page on a tiny user checkpoint with its LoRA adapter and the compact profile, run until
    the shared background job has loaded it. ``state``: session state set before the first run
    (e.g. few prompts per set, so attribution stays cheap)."""
    model, adapter = checkpoint
    monkeypatch.setenv("CURE_DATA", str(write_grouplens(tmp_path / "ml", synthetic)))
    monkeypatch.setenv("CURE_MODEL", str(model))
    monkeypatch.setenv("CURE_ADAPTER", str(adapter))
    monkeypatch.setenv("CURE_PROFILE", "compact")
    monkeypatch.syspath_prepend(APP_DIR)
    at = AppTest.from_file(page, default_timeout=300)
    for key, value in (state or {}).items():
        at.session_state[key] = value
    for _ in range(100):
        at.run()
        if not any("still loading" in i.value or "Loading your checkpoint" in i.value for i in at.info):
            break
        time.sleep(0.2)
    return at


def one_line_errors(at: AppTest) -> list[str]:
    """The page's errors, each checked to be one line (a CureError's text, never a traceback)."""
    errors = [e.value for e in at.error]
    assert all("\n" not in e and "Traceback" not in e for e in errors), errors
    return errors


def wait_until(at: AppTest, ready, tries: int = 300) -> AppTest:
    """Rerun the page (its background job goes on in a thread) until ``ready(at)``."""
    for _ in range(tries):
        if ready(at) or at.exception:
            break
        time.sleep(0.5)
        at.run()
    return at
