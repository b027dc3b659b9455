"""The app's home page renders on given data while its models train in the background."""

import json
import math
import os
import time
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from cure_core.groups import GROUPS
from cure_core.jobs import cancel_all
from tests.test_data import write_grouplens

HOME = str(Path(__file__).resolve().parent.parent / "app" / "Home.py")
APP_DIR = str(Path(HOME).parent)  # `streamlit run app/Home.py` puts app/ on the path for its pages


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
    at = _open_page(HOME, tmp_path, synthetic, monkeypatch)
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


UNLEARNING_PAGE = str(Path(__file__).resolve().parent.parent / "app" / "pages" / "3_Unlearning.py")


def test_unlearning_page_runs_a_method_and_fills_the_table(tmp_path, synthetic, monkeypatch):
    at = _open_page(UNLEARNING_PAGE, tmp_path, synthetic, monkeypatch)
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


# --- a user's own checkpoint (cure app --model PATH --adapter PATH --profile compact) --------------

REPORT_PAGE = str(Path(__file__).resolve().parent.parent / "app" / "pages" / "4_Report.py")
USER_PAGES = {"Home": HOME, "Circuits": CIRCUITS, "Module groups": GROUPS_PAGE, "Unlearning": UNLEARNING_PAGE}


def _open_user_page(page: str, tmp_path, synthetic, monkeypatch, checkpoint, state=None) -> AppTest:
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


def _one_line_errors(at: AppTest) -> list[str]:
    """The page's errors, each checked to be one line (a CureError's text, never a traceback)."""
    errors = [e.value for e in at.error]
    assert all("\n" not in e and "Traceback" not in e for e in errors), errors
    return errors


def test_home_on_a_user_checkpoint_shows_its_card_and_no_retrain(tmp_path, synthetic, monkeypatch, user_checkpoints):
    monkeypatch.syspath_prepend(APP_DIR)
    from views import NO_RETRAIN

    at = _open_user_page(HOME, tmp_path, synthetic, monkeypatch, user_checkpoints["qwen2"])
    assert not at.exception, at.exception
    assert not _one_line_errors(at)
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
    assert not at.exception and not _one_line_errors(at)
    gap = next(d.value for d in at.dataframe if "Retrain" in d.value.columns)
    assert (gap["Retrain"] == "unavailable").all() and "Original − Retrain" not in gap.columns
    assert 0 <= gap.loc["test AUC", "Original"] <= 1 and gap.loc["forget LogLoss", "Original"] > 0

    at.radio(key="builder_how").set_value("user ids")
    at.text_input(key="builder_ids").input("1, 2")
    next(b for b in at.button if b.label == "Create request").click().run()
    assert not at.exception and not _one_line_errors(at)
    assert any("2 given user(s)" in m.value for m in at.markdown)
    assert len(at.code) == 2 and at.code[1].value.startswith(("User 1 ", "User 2 "))
    assert "Train Retrain now" not in [b.label for b in at.button]  # nothing is trained for a user's model


def test_home_names_a_given_retrain(tmp_path, synthetic, monkeypatch, user_checkpoints):
    """With --retrain-adapter the card says where Retrain comes from and nothing is unavailable."""
    monkeypatch.syspath_prepend(APP_DIR)
    from views import NO_RETRAIN

    model, adapter = user_checkpoints["gpt2"]
    monkeypatch.setenv("CURE_RETRAIN_ADAPTER", str(adapter))
    at = _open_user_page(HOME, tmp_path, synthetic, monkeypatch, (model, adapter))
    assert not at.exception and not _one_line_errors(at)
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

    from cure_core.groups import TEXT_MODE_NOTE

    few = {"n_prompts": 64, "groups_prompts": 64, "groups_draws": 2, "circuits_method": "eap"}
    for name, page in USER_PAGES.items():
        at = _open_user_page(page, tmp_path, synthetic, monkeypatch, user_checkpoints[arch], state=few)
        assert not at.exception, (name, at.exception)
        start = [b for b in at.button if b.label == "Start"]  # costly work on a user's model waits for it
        assert len(start) == (name in ("Circuits", "Module groups")) and not at.metric
        started = name == "Circuits" or (name == "Module groups" and arch == "qwen2")
        if started:
            start[0].click().run()
            assert not at.exception, (name, at.exception)
        assert not _one_line_errors(at), name
        infos = [i.value for i in at.info]
        if name == "Home":
            assert NO_RETRAIN in infos
        elif name == "Module groups":
            assert any(TEXT_MODE_NOTE[1:] in i for i in infos)
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
        assert not at.exception and any("no folder at" in e for e in _one_line_errors(at)), page
        st.cache_resource.clear()


def test_token_labels_skip_left_padding_and_spell_the_prompt(synthetic, user_checkpoints, monkeypatch):
    """The tokens the attention heatmap is labelled with are the prompt's own, without padding."""
    from cure_core.model_source import ModelSource
    from cure_core.workspace import Workspace

    monkeypatch.syspath_prepend(APP_DIR)
    from views import prompt_text, token_labels

    model, adapter = user_checkpoints["llama"]
    ws = Workspace(dataset=synthetic, source=ModelSource(model=str(model), adapter=str(adapter), profile="compact"))
    rec = ws.original()
    idx = np.arange(0, len(ws.samples), len(ws.samples) // 40)[:40]
    batch = rec.encode(ws.samples, idx)
    assert (batch.attention_mask == 0).any()  # the rows differ in length, so some are padded
    for j, i in enumerate(idx):
        words = token_labels(rec, batch.input_ids[[j]], batch.attention_mask[[j]], ws.titles, numbered=False)
        assert "".join(words) == prompt_text(rec, ws.samples, int(i), ws.titles)
        assert len(words) == int(batch.attention_mask[j].sum())
        numbered = token_labels(rec, batch.input_ids[[j]], batch.attention_mask[[j]], ws.titles)
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


# --- the model picker (sidebar of every page) ------------------------------------------------------

TINY_TEXT_RECIPE = (
    '{"kind":"text","n_layer":2,"n_head":2,"d_model":32,"d_mlp":64,"vocab_size":400,"tokenizer_prompts":300,'
    '"batch_size":16,"max_steps":6,"eval_every":3,"eval_samples":100,"train_precision":"fp32"}'
)


def _wait(at: AppTest, ready, tries: int = 300) -> AppTest:
    """Rerun the page (its background job goes on in a thread) until ``ready(at)``."""
    for _ in range(tries):
        if ready(at) or at.exception:
            break
        time.sleep(0.5)
        at.run()
    return at


def test_picker_lists_every_kind_and_opens_a_checkpoint_folder(tmp_path, synthetic, monkeypatch, user_checkpoints):
    """With CURE_MODEL the picker offers the item model, the text model and that checkpoint (the
    default); switching to the text model starts its training (CURE_RECIPE's tiny text recipe),
    switching back finds the checkpoint loaded; a folder opened in the sidebar is checked through
    ModelSource (a bad path is one line) and becomes the chosen model."""
    monkeypatch.syspath_prepend(APP_DIR)
    monkeypatch.setenv("CURE_RECIPE", TINY_TEXT_RECIPE)
    from picker import PICKER, ModelChoice

    at = _open_user_page(HOME, tmp_path, synthetic, monkeypatch, user_checkpoints["gpt2"])
    assert not at.exception and not _one_line_errors(at)
    picker = at.radio(key=PICKER)
    assert picker.options == [
        "Item model (trained here)",
        "Text model (trained here)",
        "Your checkpoint: gpt2 + gpt2-lora",
    ]
    assert picker.value == ModelChoice(kind="checkpoint").key

    at.radio(key=PICKER).set_value(ModelChoice(kind="text").key).run()
    assert not at.exception and not _one_line_errors(at)
    assert any("Training the text model" in i.value for i in at.info)
    at.radio(key=PICKER).set_value(ModelChoice(kind="checkpoint").key).run()
    card = next(d.value for d in at.dataframe if "architecture" in d.value.index)
    assert card.loc["architecture", "value"].startswith("GPT2LMHeadModel")

    model, adapter = user_checkpoints["qwen2"]
    for outside in (str(model), "/etc", str(tmp_path / "no-such-model")):  # not under an allowed root yet
        at.text_input(key="checkpoint_path").input(outside)
        at.button(key="checkpoint_open").click().run()
        errors = _one_line_errors(at)
        assert not at.exception and len(errors) == 1, errors
        assert errors[0].startswith(f"the model folder {outside} is outside the folders this app may open")
    roots = {str(model.parent), str(adapter.parent), str(tmp_path)}
    monkeypatch.setenv("CURE_MODEL_ROOTS", os.pathsep.join(sorted(roots)))
    at.text_input(key="checkpoint_path").input(str(tmp_path / "no-such-model"))
    at.button(key="checkpoint_open").click().run()
    assert not at.exception and any("no folder at" in e for e in _one_line_errors(at))
    assert len(at.radio(key=PICKER).options) == 3

    at.text_input(key="checkpoint_path").input(str(model))
    at.text_input(key="checkpoint_adapter").input(str(adapter))
    at.selectbox(key="checkpoint_profile").set_value("compact")
    at.button(key="checkpoint_open").click().run()
    assert not at.exception and not _one_line_errors(at)
    picker = at.radio(key=PICKER)
    assert picker.options[-1] == "Your checkpoint: qwen2 + qwen2-lora"
    assert json.loads(picker.value)["source"] == {"model": str(model), "adapter": str(adapter), "profile": "compact"}
    _wait(at, lambda a: any("architecture" in d.value.index for d in a.dataframe))
    assert not at.exception and not _one_line_errors(at)
    card = next(d.value for d in at.dataframe if "architecture" in d.value.index)
    assert card.loc["architecture", "value"].startswith("Qwen2ForCausalLM")


def test_text_model_trained_here_follows_across_pages(tmp_path, synthetic, monkeypatch):
    """CURE_RECIPE with "kind": "text" makes the text model the default: Home trains it (the
    still-training flow), then shows it in text mode; the choice follows to Unlearning, where
    the LoRA switch is on by default."""
    monkeypatch.setenv("CURE_DATA", str(write_grouplens(tmp_path / "ml", synthetic)))
    monkeypatch.setenv("CURE_RECIPE", TINY_TEXT_RECIPE)
    monkeypatch.syspath_prepend(APP_DIR)
    from picker import PICKER, ModelChoice

    at = AppTest.from_file(HOME, default_timeout=120).run()
    assert not at.exception and not _one_line_errors(at)
    picker = at.radio(key=PICKER)
    assert picker.options == ["Item model (trained here)", "Text model (trained here)"]
    assert picker.value == ModelChoice(kind="text").key
    assert any("Training the text model" in i.value for i in at.info)
    _wait(at, lambda a: any("Memorization gap" in h.value for h in a.subheader) or bool(a.error))
    assert not at.exception and not _one_line_errors(at)
    assert any("text model trained here" in c.value for c in at.caption)
    card = next(d.value for d in at.dataframe if "architecture" in d.value.index)
    assert card.loc["architecture", "value"].startswith("GPT2LMHeadModel")
    assert at.code[0].value.startswith("User ")  # the first forget prompt in the compact profile's words
    assert "Evaluate" in [b.label for b in at.button]  # the text model's gap waits for a button

    at.switch_page("pages/3_Unlearning.py").run()
    assert not at.exception and not _one_line_errors(at)
    assert at.radio(key=PICKER).value == ModelChoice(kind="text").key
    assert at.checkbox(key="lora_text").value is True and at.number_input(key="lora_rank").value == 8
