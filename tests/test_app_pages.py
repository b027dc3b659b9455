"""The app's pages on the item model trained here: Home, Circuits, Module groups, Unlearning and
their one-line errors, while the models train in the background."""

import math
import time

import streamlit as st
from streamlit.testing.v1 import AppTest

from cure_core.groups import GROUPS
from cure_core.jobs import cancel_all
from tests.app_testing import (
    CIRCUITS,
    GROUPS_PAGE,
    HOME,
    UNLEARNING_PAGE,
    open_page,
    stop_background_jobs,  # noqa: F401 (autouse: stops the pages' background jobs)
)
from tests.test_data import write_grouplens


def test_home_page_lists_dataset_and_default_request(tmp_path, synthetic, monkeypatch):
    monkeypatch.setenv("CURE_DATA", str(write_grouplens(tmp_path / "ml", synthetic)))
    at = AppTest.from_file(HOME, default_timeout=60).run()
    assert not at.exception
    assert at.title[0].value == "CURE Studio"
    assert any("user-" in m.value for m in at.markdown), [m.value for m in at.markdown]
    assert len(at.dataframe) >= 2  # dataset summary and the request's set sizes
    assert not at.error


def test_circuits_page_shows_faithfulness_graph_and_exports(tmp_path, synthetic, monkeypatch):
    at = open_page(CIRCUITS, tmp_path, synthetic, monkeypatch)
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


def test_module_groups_page_shows_groups_and_ablates(tmp_path, synthetic, monkeypatch):
    at = open_page(GROUPS_PAGE, tmp_path, synthetic, monkeypatch)
    at.select_slider(key="groups_prompts").set_value(64).run()
    assert not at.exception, at.exception
    assert {"separability", "importance-weighted separability"} <= {m.label for m in at.metric}
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
    at = open_page(HOME, tmp_path, synthetic, monkeypatch)
    for _ in range(50):  # the home page shows the builder once the models are loaded
        if any(r.key == "builder_how" for r in at.radio):
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


def test_unlearning_page_runs_a_method_and_fills_the_table(tmp_path, synthetic, monkeypatch):
    at = open_page(UNLEARNING_PAGE, tmp_path, synthetic, monkeypatch)
    assert not at.exception, at.exception
    assert any("No run in this session" in i.value for i in at.info)
    assert at.checkbox(key="lora_item").value is False and at.number_input(key="lora_rank").value == 8
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
    assert set(table["model"]) == {"Item model (trained here)"} and table.iloc[2]["mode"] == "full"
    assert table.iloc[2]["trainable params"] >= table.iloc[2]["params updated"] > 0
    assert len(at.get("download_button")) == 3


def test_user_errors_show_as_one_line_in_the_page(tmp_path, synthetic, monkeypatch):
    """An unknown request id, a cancelled run and a bad recipe: a readable st.error, no traceback."""
    at = open_page(UNLEARNING_PAGE, tmp_path, synthetic, monkeypatch)
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
