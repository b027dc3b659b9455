"""The app's home page renders on given data while its models train in the background."""

import math
import time
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from cure_core.groups import GROUPS
from cure_core.jobs import cancel_all
from tests.test_data import write_grouplens

HOME = str(Path(__file__).resolve().parent.parent / "app" / "Home.py")


@pytest.fixture(autouse=True)
def stop_background_jobs():
    """The page starts training in a thread; stop it so it cannot touch later tests' RNG, and
    drop Streamlit's process-wide caches so the next test starts like a fresh server."""
    yield
    cancel_all()
    st.cache_resource.clear()
    st.cache_data.clear()


def test_home_page_lists_dataset_and_default_request(tmp_path, synthetic, monkeypatch):
    monkeypatch.setenv("CURE_DATA", str(write_grouplens(tmp_path / "ml", synthetic)))
    at = AppTest.from_file(HOME, default_timeout=60).run()
    assert not at.exception
    assert at.title[0].value == "CURE Studio"
    assert any("user-" in m.value for m in at.markdown), [m.value for m in at.markdown]
    assert len(at.dataframe) >= 2  # dataset summary and the request's set sizes
    assert not at.error


CIRCUITS = str(Path(__file__).resolve().parent.parent / "app" / "pages" / "1_Circuits.py")


def _open_page(page: str, tmp_path, synthetic, monkeypatch) -> AppTest:
    """An analysis page on synthetic data with the tiny model already trained (what the Home
    page's background job does first), run until the shared job has loaded the models."""
    from cure_core.workspace import Workspace
    from tests.conftest import TINY_RECIPE

    data = str(write_grouplens(tmp_path / "ml", synthetic))
    monkeypatch.setenv("CURE_DATA", data)
    monkeypatch.setattr("cure_core.workspace.Recipe", lambda: TINY_RECIPE)
    monkeypatch.syspath_prepend(
        str(Path(HOME).parent)
    )  # `streamlit run app/Home.py` puts app/ on the path for its pages
    ws = Workspace(data=data, recipe=TINY_RECIPE)
    ws.ensure_models(ws.default_request(), quiet=True)
    at = AppTest.from_file(page, default_timeout=120)
    for _ in range(50):
        at.run()
        if not any("still training" in i.value for i in at.info):
            break
        time.sleep(0.2)
    return at


def test_circuits_page_shows_faithfulness_graph_and_exports(tmp_path, synthetic, monkeypatch):
    at = _open_page(CIRCUITS, tmp_path, synthetic, monkeypatch)
    assert not at.exception, at.exception
    at.select_slider(key="n_prompts").set_value(64)
    at.run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    labels = {m.label: m.value for m in at.metric}
    assert "faithfulness F on forget" in labels and math.isfinite(float(labels["faithfulness F on forget"]))
    before = labels["edges / nodes"]
    at.slider(key="top_n").set_value(5).run()
    assert {m.label: m.value for m in at.metric}["edges / nodes"] != before
    at.radio(key="view").set_value("overlap").run()
    assert "faithfulness F on retain" in {m.label for m in at.metric}
    assert not at.exception


GROUPS_PAGE = str(Path(__file__).resolve().parent.parent / "app" / "pages" / "2_Module_groups.py")


def test_module_groups_page_shows_groups_and_ablates(tmp_path, synthetic, monkeypatch):
    at = _open_page(GROUPS_PAGE, tmp_path, synthetic, monkeypatch)
    at.select_slider(key="groups_prompts").set_value(64).run()
    assert not at.exception, at.exception
    assert "separability" in {m.label for m in at.metric}
    tables = len(at.dataframe)
    assert tables >= 3  # sizes, ablation, all modules
    before = at.dataframe[1].value.copy()
    modules = at.dataframe[-1].value
    # which group holds heads/MLPs depends on the trained tiny model; ablate one that does
    group = next(g for g in GROUPS if modules.loc[modules["kind"].isin(["head", "mlp"]), "group"].eq(g).any())
    at.toggle(key=f"ablate-{group}").set_value(True).run()
    assert not at.exception
    after = at.dataframe[1].value
    assert (after["mean |margin change|"] > 0).all() and (before["mean |margin change|"] == 0).all()


def test_home_request_builder_shows_histories_and_refuses_bad_ids(tmp_path, synthetic, monkeypatch):
    at = _open_page(HOME, tmp_path, synthetic, monkeypatch)
    for _ in range(50):  # the home page shows the builder once the models are loaded
        if at.get("form"):
            break
        time.sleep(0.2)
        at.run()
    assert not at.exception, at.exception
    at.radio(key="builder_how").set_value("user ids")
    at.text_input(key="builder_ids").input("1, 2")
    at.button[0].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("2 given user(s)" in m.value for m in at.markdown), [m.value for m in at.markdown]
    histories = at.dataframe[-1].value if "ratings" in at.dataframe[-1].value.columns else at.dataframe[-2].value
    assert set(histories["user"]) == {"1", "2"} and histories.iloc[0, 2].count(";") == 9
    assert "Train Retrain now" in [b.label for b in at.button]
    at.text_input(key="builder_ids").input("1, 424242")
    at.button[0].click().run()
    assert any("unknown user id" in e.value for e in at.error)


UNLEARNING_PAGE = str(Path(__file__).resolve().parent.parent / "app" / "pages" / "3_Unlearning.py")


def test_unlearning_page_runs_a_method_and_fills_the_table(tmp_path, synthetic, monkeypatch):
    at = _open_page(UNLEARNING_PAGE, tmp_path, synthetic, monkeypatch)
    assert not at.exception, at.exception
    assert any("No run in this session" in i.value for i in at.info)
    at.selectbox(key="method").set_value("npo")
    at.number_input(key="steps").set_value(4)
    at.button[0].click().run()
    for _ in range(150):  # the run goes on in a background thread; the page polls it
        if at.get("download_button"):
            break
        time.sleep(0.2)
        at.run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    table = at.dataframe[0].value
    assert list(table["method"]) == ["Original", "Retrain", "NPO"]
    assert 0 <= table.iloc[2]["JSD to Retrain"] < 1
    assert len(at.get("download_button")) == 3


def test_user_errors_show_as_one_line_in_the_page(tmp_path, synthetic, monkeypatch):
    """An unknown request id, a cancelled run and a bad recipe: a readable st.error, no traceback."""
    at = _open_page(UNLEARNING_PAGE, tmp_path, synthetic, monkeypatch)
    at.text_input(key="unlearn_request").input("user-doesnotexist").run()
    assert not at.exception and any("user-doesnotexist" in e.value and "fix:" in e.value for e in at.error), [
        e.value for e in at.error
    ]

    at = AppTest.from_file(UNLEARNING_PAGE, default_timeout=120).run()
    at.number_input(key="steps").set_value(1000)
    at.button[0].click().run()
    cancel_all()  # what the page's Cancel button does to its job
    at.run()
    assert not at.exception and any("cancelled" in e.value for e in at.error), [e.value for e in at.error]
    assert any("No run in this session" in i.value for i in at.info)

    st.cache_resource.clear()
    monkeypatch.setenv("CURE_RECIPE", '{"n_layer": 0}')
    at = AppTest.from_file(HOME, default_timeout=60).run()
    assert not at.exception and any("invalid recipe" in e.value for e in at.error), [e.value for e in at.error]
