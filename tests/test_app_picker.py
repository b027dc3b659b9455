"""The model picker in every page's sidebar: the kinds it offers, a checkpoint folder opened in
it, and the text model trained here followed across pages."""

import json
import os

from streamlit.testing.v1 import AppTest

from tests.app_testing import (
    APP_DIR,
    HOME,
    one_line_errors,
    open_user_page,
    stop_background_jobs,  # noqa: F401 (autouse: stops the pages' background jobs)
    wait_until,
)
from tests.test_data import write_grouplens
from tests.tiny_recipes import TINY_TEXT

TINY_TEXT_RECIPE = TINY_TEXT.model_dump_json()


def test_picker_lists_every_kind_and_opens_a_checkpoint_folder(tmp_path, synthetic, monkeypatch, user_checkpoints):
    """With CURE_MODEL the picker offers the item model, the text model and that checkpoint (the
    default); switching to the text model starts its training (CURE_RECIPE's tiny text recipe),
    switching back finds the checkpoint loaded; a folder opened in the sidebar is checked through
    ModelSource (a bad path is one line) and becomes the chosen model."""
    monkeypatch.syspath_prepend(APP_DIR)
    monkeypatch.setenv("CURE_RECIPE", TINY_TEXT_RECIPE)
    from picker import PICKER, ModelChoice

    at = open_user_page(HOME, tmp_path, synthetic, monkeypatch, user_checkpoints["gpt2"])
    assert not at.exception and not one_line_errors(at)
    picker = at.radio(key=PICKER)
    assert picker.options == [
        "Item model (trained here)",
        "Text model (trained here)",
        "Your checkpoint: gpt2 + gpt2-lora",
    ]
    assert picker.value == ModelChoice(kind="checkpoint").key

    at.radio(key=PICKER).set_value(ModelChoice(kind="text").key).run()
    assert not at.exception and not one_line_errors(at)
    assert any("Training the text model" in i.value for i in at.info)
    at.radio(key=PICKER).set_value(ModelChoice(kind="checkpoint").key).run()
    card = next(d.value for d in at.dataframe if "architecture" in d.value.index)
    assert card.loc["architecture", "value"].startswith("GPT2LMHeadModel")

    model, adapter = user_checkpoints["qwen2"]
    for outside in (str(model), "/etc", str(tmp_path / "no-such-model")):  # not under an allowed root yet
        at.text_input(key="checkpoint_path").input(outside)
        at.button(key="checkpoint_open").click().run()
        errors = one_line_errors(at)
        assert not at.exception and len(errors) == 1, errors
        assert errors[0].startswith(f"the model folder {outside} is outside the folders this app may open")
    roots = {str(model.parent), str(adapter.parent), str(tmp_path)}
    monkeypatch.setenv("CURE_MODEL_ROOTS", os.pathsep.join(sorted(roots)))
    at.text_input(key="checkpoint_path").input(str(tmp_path / "no-such-model"))
    at.button(key="checkpoint_open").click().run()
    assert not at.exception and any("no folder at" in e for e in one_line_errors(at))
    assert len(at.radio(key=PICKER).options) == 3

    at.text_input(key="checkpoint_path").input(str(model))
    at.text_input(key="checkpoint_adapter").input(str(adapter))
    at.selectbox(key="checkpoint_profile").set_value("compact")
    at.button(key="checkpoint_open").click().run()
    assert not at.exception and not one_line_errors(at)
    picker = at.radio(key=PICKER)
    assert picker.options[-1] == "Your checkpoint: qwen2 + qwen2-lora"
    assert json.loads(picker.value)["source"] == {"model": str(model), "adapter": str(adapter), "profile": "compact"}
    wait_until(at, lambda a: any("architecture" in d.value.index for d in a.dataframe))
    assert not at.exception and not one_line_errors(at)
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
    assert not at.exception and not one_line_errors(at)
    picker = at.radio(key=PICKER)
    assert picker.options == ["Item model (trained here)", "Text model (trained here)"]
    assert picker.value == ModelChoice(kind="text").key
    assert any("Training the text model" in i.value for i in at.info)
    wait_until(at, lambda a: any("Memorization gap" in h.value for h in a.subheader) or bool(a.error))
    assert not at.exception and not one_line_errors(at)
    assert any("text model trained here" in c.value for c in at.caption)
    card = next(d.value for d in at.dataframe if "architecture" in d.value.index)
    assert card.loc["architecture", "value"].startswith("GPT2LMHeadModel")
    assert at.code[0].value.startswith("User ")  # the first forget prompt in the compact profile's words
    assert "Evaluate" in [b.label for b in at.button]  # the text model's gap waits for a button

    at.switch_page("pages/3_Unlearning.py").run()
    assert not at.exception and not one_line_errors(at)
    assert at.radio(key=PICKER).value == ModelChoice(kind="text").key
    assert at.checkbox(key="lora_text").value is True and at.number_input(key="lora_rank").value == 8
