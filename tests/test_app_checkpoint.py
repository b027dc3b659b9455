"""The app on a user's own checkpoint (``cure app --model PATH --adapter PATH --profile
compact``): every page on each architecture, a given Retrain, a bad model variable, the
attention heatmap's token labels and the circuit figure's key/value heads."""

import json
import math

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from tests.app_testing import (
    APP_DIR,
    HOME,
    REPORT_PAGE,
    USER_PAGES,
    one_line_errors,
    open_user_page,
    stop_background_jobs,  # noqa: F401 (autouse: stops the pages' background jobs)
)
from tests.test_data import write_grouplens


def test_home_on_a_user_checkpoint_shows_its_card_and_no_retrain(tmp_path, synthetic, monkeypatch, user_checkpoints):
    monkeypatch.syspath_prepend(APP_DIR)
    from views import NO_RETRAIN

    at = open_user_page(HOME, tmp_path, synthetic, monkeypatch, user_checkpoints["qwen2"])
    assert not at.exception, at.exception
    assert not one_line_errors(at)
    card = next(d.value for d in at.dataframe if "architecture" in d.value.index)
    assert card.loc["architecture", "value"].startswith("Qwen2ForCausalLM")
    assert "4 query heads, 2 key/value heads" in card.loc["heads", "value"]
    assert card.loc["adapter", "value"].startswith("LoRA rank ") and "q_proj" in card.loc["adapter", "value"]
    assert card.loc["profile", "value"].startswith("compact") and card.loc["Retrain", "value"] == NO_RETRAIN
    assert card.loc["dtype", "value"] == "fp32" and card.loc["device", "value"] == "cpu"
    assert any(i.value == NO_RETRAIN for i in at.info)
    prompt = at.code[0].value  # the default request's first forget prompt, in the profile's words
    assert prompt.startswith("User ") and prompt.endswith("Answer:")

    at.button(key=next(b.key for b in at.button if b.label == "Evaluate")).click().run()
    assert not at.exception and not one_line_errors(at)
    gap = next(d.value for d in at.dataframe if "Retrain" in d.value.columns)
    assert (gap["Retrain"] == "unavailable").all() and "Original − Retrain" not in gap.columns
    assert 0 <= gap.loc["test AUC", "Original"] <= 1 and gap.loc["forget LogLoss", "Original"] > 0

    at.radio(key="builder_how").set_value("user ids")
    at.text_input(key="builder_ids").input("1, 2")
    next(b for b in at.button if b.label == "Create request").click().run()
    assert not at.exception and not one_line_errors(at)
    assert any("2 given user(s)" in m.value for m in at.markdown)
    assert len(at.code) == 2 and at.code[1].value.startswith(("User 1 ", "User 2 "))
    assert "Train Retrain now" not in [b.label for b in at.button]  # nothing is trained for a user's model


def test_home_names_a_given_retrain(tmp_path, synthetic, monkeypatch, user_checkpoints):
    """With --retrain-adapter the card says where Retrain comes from and nothing is unavailable."""
    monkeypatch.syspath_prepend(APP_DIR)
    from views import NO_RETRAIN

    model, adapter = user_checkpoints["gpt2"]
    monkeypatch.setenv("CURE_RETRAIN_ADAPTER", str(adapter))
    at = open_user_page(HOME, tmp_path, synthetic, monkeypatch, (model, adapter))
    assert not at.exception and not one_line_errors(at)
    card = next(d.value for d in at.dataframe if "architecture" in d.value.index)
    assert card.loc["Retrain", "value"] == f"given: adapter {adapter} over {model}"
    assert NO_RETRAIN not in [i.value for i in at.info] and "no Retrain given" not in at.caption[0].value


@pytest.mark.parametrize("arch", ["qwen2", "llama", "gpt2"])
def test_every_page_opens_on_a_user_checkpoint(arch, tmp_path, synthetic, monkeypatch, user_checkpoints):
    """Each page on each architecture: no exception or error, the text-model notes, real tokens
    on the attention heatmap, key/value heads in the graph and the groups of a GQA model.
    Module groups are computed on Qwen2 only (the other two show the page up to its Start)."""
    monkeypatch.syspath_prepend(APP_DIR)
    from views import NO_RETRAIN

    from cure_core.groups import NO_ROWS_NOTE

    few = {"n_prompts": 64, "groups_prompts": 64, "groups_draws": 2, "circuits_method": "eap"}
    for name, page in USER_PAGES.items():
        at = open_user_page(page, tmp_path, synthetic, monkeypatch, user_checkpoints[arch], state=few)
        assert not at.exception, (name, at.exception)
        start = [b for b in at.button if b.label == "Start"]  # costly work on a user's model waits for it
        assert len(start) == (name in ("Circuits", "Module groups")) and not at.metric
        started = name == "Circuits" or (name == "Module groups" and arch == "qwen2")
        if started:
            start[0].click().run()
            assert not at.exception, (name, at.exception)
        assert not one_line_errors(at), name
        infos = [i.value for i in at.info]
        if name == "Home":
            assert NO_RETRAIN in infos
        elif name == "Module groups":
            assert any(NO_ROWS_NOTE[1:] in i for i in infos)
            if started:
                assert "separability" in {m.label for m in at.metric}
                modules = at.dataframe[-1].value
                assert set(modules["kind"]) == {"head", "kv head", "mlp"}  # no embedding rows in text mode
                assert "kv head 1" in at.get("plotly_chart")[0].proto.spec
        elif name == "Unlearning":  # runs on a user's model too, through a LoRA adapter by default
            assert any("No run in this session" in i for i in infos) and at.get("form")
            assert at.checkbox(key="lora_checkpoint").value is True and at.number_input(key="lora_rank").value == 8
        else:  # Circuits
            labels = {m.label: m.value for m in at.metric}
            assert math.isfinite(float(labels["faithfulness F on forget"]))
            assert ("a0.kv0" in at.get("plotly_chart")[0].proto.spec) == (arch != "gpt2")
            at.session_state["selected_node"] = "a1.h1"  # what clicking the node does
            at.run()
            heat = json.loads(at.get("plotly_chart")[-1].proto.spec)["data"][0]
            assert "".join(label.split(":", 1)[1] for label in heat["x"]) == at.code[-1].value  # the real tokens
            if arch != "gpt2":
                at.session_state["selected_node"] = "a1.kv0"
                at.run()
                assert any("a1.kv0: a key/value head" in c.value and "a1.h1" in c.value for c in at.caption)
            assert not at.exception, at.exception
    at = AppTest.from_file(REPORT_PAGE, default_timeout=60).run()
    assert not at.exception and not at.error


def test_a_bad_model_variable_is_one_line_on_every_page(tmp_path, synthetic, monkeypatch):
    monkeypatch.setenv("CURE_DATA", str(write_grouplens(tmp_path / "ml", synthetic)))
    monkeypatch.setenv("CURE_MODEL", str(tmp_path / "no-such-model"))
    monkeypatch.syspath_prepend(APP_DIR)
    for page in [HOME, *USER_PAGES.values()]:
        at = AppTest.from_file(page, default_timeout=60).run()
        assert not at.exception and any("no folder at" in e for e in one_line_errors(at)), page
        st.cache_resource.clear()


def test_token_labels_skip_left_padding_and_spell_the_prompt(synthetic, user_checkpoints, monkeypatch):
    """The tokens the attention heatmap is labelled with are the prompt's own, without padding."""
    from cure_core.model_source import ModelSource
    from cure_core.workspace import Workspace

    monkeypatch.syspath_prepend(APP_DIR)
    from views import prompt_text, token_labels

    model, adapter = user_checkpoints["llama"]
    ws = Workspace.open(
        dataset=synthetic, source=ModelSource(model=str(model), adapter=str(adapter), profile="compact")
    )
    rec = ws.models.original()
    idx = np.arange(0, len(ws.data.samples), len(ws.data.samples) // 40)[:40]
    batch = rec.encode(ws.data.samples, idx)
    assert (batch.attention_mask == 0).any()  # the rows differ in length, so some are padded
    for j, i in enumerate(idx):
        words = token_labels(rec, batch.input_ids[[j]], batch.attention_mask[[j]], ws.data.titles, numbered=False)
        assert "".join(words) == prompt_text(rec, ws.data.samples, int(i), ws.data.titles)
        assert len(words) == int(batch.attention_mask[j].sum())
        numbered = token_labels(rec, batch.input_ids[[j]], batch.attention_mask[[j]], ws.data.titles)
        assert len(set(numbered)) == len(numbered)


@pytest.mark.parametrize("kv_heads", [2, 4])
def test_circuit_figure_draws_kv_edges_to_key_value_heads(kv_heads, monkeypatch):
    """With grouped-query attention every K/V edge ends at a key/value head node, joined to its
    reader heads; without it the figure has no kv nodes."""
    from analysis.circuit import top_n
    from analysis.graph import GraphShape

    monkeypatch.syspath_prepend(APP_DIR)
    from circuit_plot import circuit_figure, kv_readers, positions

    shape = GraphShape(2, 4, kv_heads)
    scores = np.random.default_rng(0).normal(size=(shape.n_src, shape.n_dst))
    circuit = top_n(shape, scores, 40)
    fig = circuit_figure(circuit, scores, {"forget": np.zeros(shape.n_src)}, "qkv")
    nodes = next(t for t in fig.data if t.name == "modules")
    kv_nodes = [n for n in nodes.customdata if ".kv" in n]
    assert len(kv_nodes) == (shape.n_layers * kv_heads if shape.grouped else 0)
    pos = positions(shape)
    ends = set()
    for trace in fig.data:
        if trace.name in ("k", "v"):
            ends |= {(x, y) for x, y in zip(trace.x[1::3], trace.y[1::3], strict=True)}
    assert ends and ends <= {pos[n] for n in (kv_nodes or pos)}
    if shape.grouped:
        assert kv_readers(shape, "a1.kv1") == ["a1.h2", "a1.h3"]
