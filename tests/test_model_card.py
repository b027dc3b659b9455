"""The model card: ``meta.json`` as every earlier version wrote it reads through the one legacy
reader with its old meaning, and a card reads back as it was written.

``tests/fixtures/meta/`` holds the ``meta.json`` files the code wrote before the card (commit
d558c71) for each kind of model folder: an item model, an item run's model, a LoRA run's adapter
(and its merged copy), the text model trained here, a text run's checkpoint and its LoRA adapter.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cure_core.legacy import LATER_FIELDS_AS_BEFORE, REMOVED_FIELDS_AS_BEFORE
from cure_core.model.card import CARD_VERSION, ModelCard, read_card, write_card
from cure_core.model.recipe import Recipe, TextRecipe
from cure_core.unlearning.run_store import load_run_model

FIXTURES = Path(__file__).parent / "fixtures" / "meta"
KINDS = {
    "item": "item",
    "item-run": "item",
    "lora-run": "lora",
    "lora-merged": "item",
    "text-recipe": "text-recipe",
    "text-run": "checkpoint",
    "text-lora-run": "lora",
}


def _folder(tmp_path: Path, meta: dict) -> Path:
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    return tmp_path


@pytest.mark.parametrize("name", KINDS)
def test_meta_written_before_the_card_reads_with_its_old_meaning(name, tmp_path):
    old = json.loads((FIXTURES / f"{name}.json").read_text())
    card = read_card(_folder(tmp_path, old))
    assert card.kind == KINDS[name] and card.card_version == CARD_VERSION
    if old["mode"] == "item":  # one whole-file hash, checked on load and keyed on: both meanings
        assert card.file_sha256 == card.fingerprint == old["weights_sha256"]
    elif "weights_sha256" in old:  # the sampled fingerprint of a run's folder: identity only
        assert card.fingerprint == old["weights_sha256"] and card.file_sha256 is None
    else:  # the text model trained here kept its file hash apart; its identity is computed on load
        assert card.file_sha256 == old["file_sha256"] and card.fingerprint is None
    for field in ("run", "method", "request", "role", "dataset", "known_users", "n_params", "best_epoch", "profile"):
        assert getattr(card, field) == old.get(field), field
    if "metrics" in old:
        assert card.metrics.model_dump(exclude_none=True) == {k: v for k, v in old["metrics"].items() if v is not None}
    if "recipe" in old:
        recipe = Recipe if "kind" not in old["recipe"] else TextRecipe
        assert card.recipe == recipe(**old["recipe"])
    if old.get("unlearned_from"):
        assert card.unlearned_from.path == old["unlearned_from"]["path"]
    assert card.curve == old.get("curve")
    again = tmp_path / "again"
    again.mkdir()
    write_card(again, card)
    assert read_card(again) == card


def test_an_item_recipe_from_before_later_and_removed_fields_reads_as_it_was_trained(tmp_path):
    """Item models keyed while ``max_minutes`` was a field and before ``activation`` and
    ``train_precision`` existed: the recipe they were trained with, in today's fields."""
    old = json.loads((FIXTURES / "item.json").read_text())
    recipe = {k: v for k, v in old["recipe"].items() if k not in LATER_FIELDS_AS_BEFORE}
    del old["stopped_by"]
    card = read_card(_folder(tmp_path, {**old, "recipe": {**recipe, **REMOVED_FIELDS_AS_BEFORE}}))
    assert card.recipe == Recipe(**recipe, **LATER_FIELDS_AS_BEFORE) and card.stopped_by is None
    assert card.recipe.cache_spec() == {**recipe, **REMOVED_FIELDS_AS_BEFORE}  # the key it was cached under


@pytest.mark.parametrize(
    "meta",
    [
        [],
        {"weights_sha256": "a" * 64},  # no mode: no version wrote it
        {"mode": "text-mode", "weights_sha256": "a" * 64},
        {"mode": "item", "weights_sha256": 3},
        {"card_version": CARD_VERSION, "kind": "item", "unknown": 1},
        {"card_version": CARD_VERSION + 1, "kind": "item"},
    ],
    ids=["list", "no-mode", "unknown-mode", "sha-not-text", "unknown-field", "later-version"],
)
def test_a_malformed_or_unknown_meta_is_refused(meta, tmp_path):
    with pytest.raises(ValueError):
        read_card(_folder(tmp_path, meta))


def test_fields_a_card_leaves_unset_are_not_written(tmp_path):
    write_card(tmp_path, ModelCard(kind="lora", fingerprint="f" * 64))
    assert json.loads((tmp_path / "meta.json").read_text()) == {
        "card_version": CARD_VERSION,
        "fingerprint": "f" * 64,
        "kind": "lora",
    }


def test_a_run_saved_before_the_card_loads_as_it_was_saved(tiny_ws, isolated_cache):
    """A full run's item model folder whose ``meta.json`` has the old form loads as an item
    model, with its whole-file hash as its identity."""
    from cure_core.model.store import save_recommender

    rec = tiny_ws.models.original(quiet=True)
    folder = isolated_cache / "runs" / "ga-0123456789" / "model"
    save_recommender(rec, folder, tiny_ws.data.samples, ModelCard(run="ga-0123456789", method="ga"))
    old = json.loads((FIXTURES / "item-run.json").read_text())
    digest = read_card(folder).file_sha256
    known = read_card(folder).known_users
    shutil.copy(FIXTURES / "item-run.json", folder / "meta.json")
    (folder / "meta.json").write_text(json.dumps({**old, "weights_sha256": digest, "known_users": known}))
    loaded = load_run_model(tiny_ws.models, "ga-0123456789")
    assert loaded.card.kind == "item" and loaded.card.fingerprint == digest == rec.card.fingerprint
    assert loaded.card.run == old["run"] and loaded.card.metrics.forget_auc == old["metrics"]["forget_auc"]
