import os

import numpy as np
import pytest
import torch
from tolerances import assert_close

from cure_core.checkpoints.bridge import load_bridge
from cure_core.data import make_synthetic
from cure_core.data.samples import Samples, build_samples
from cure_core.errors import CureError
from cure_core.legacy import REMOVED_FIELDS_AS_BEFORE
from cure_core.metrics import utility
from cure_core.model import repository
from cure_core.model.backends import ItemBackend
from cure_core.model.recipe import Recipe
from cure_core.model.store import CorruptModelError, load_recommender
from cure_core.prompts import UNK_USER
from cure_core.workspace import Workspace
from tests.tiny_recipes import TINY_RECIPE


@pytest.fixture
def trained(tiny_ws):
    return tiny_ws, tiny_ws.models.original(quiet=True)


def test_training_keeps_the_best_validation_epoch_and_records_its_metrics(trained):
    """Invariants of the training rule (how well a 3-epoch model learns is a finding, not a test):
    the saved model is the best-validation epoch, and the recorded test AUC is that of the saved
    weights, recomputed from their predictions."""
    ws, rec = trained
    card = rec.card
    curve, metrics = card.curve, card.metrics
    assert 1 <= len(curve) <= TINY_RECIPE.max_epochs and [row["epoch"] for row in curve] == list(
        range(1, len(curve) + 1)
    )
    assert all(
        np.isfinite(row["train_loss"]) and 0 <= row["valid_auc"] <= 1 and 0 <= row["test_auc"] <= 1 for row in curve
    )
    best = max(curve, key=lambda row: row["valid_auc"])
    assert card.best_epoch == best["epoch"] and metrics.valid_auc == best["valid_auc"]
    test = ws.data.samples.index(Samples.TEST)
    recomputed = utility(ws.data.samples.label[test], rec.predict(ws.data.samples, test))["auc"]
    assert metrics.test_auc == pytest.approx(recomputed, abs=1e-9)
    assert metrics.test_auc == pytest.approx(best["test_auc"], abs=1e-6)  # the curve scored the same weights


def test_mixed_precision_keeps_float32_weights(trained, synthetic):
    """bf16 autocast (the default) is a training detail: what is saved and evaluated is float32.
    (The tests' tiny recipe trains in fp32, so that trainings compare exactly on any CPU.)"""
    _, plain = trained
    assert plain.card.recipe.train_precision == "fp32" and Recipe().train_precision == "bf16-mixed"
    mixed = Workspace.open(
        dataset=synthetic,
        recipe=TINY_RECIPE.model_copy(
            update={"train_precision": "bf16-mixed", "activation": "gelu_new", "max_epochs": 1}
        ),
    )
    rec = mixed.models.original(quiet=True)
    assert (
        rec.path != plain.path
        and rec.card.recipe.train_precision == "bf16-mixed"
        and rec.model.config.activation_function == "gelu_new"
    )
    assert all(p.dtype == torch.float32 for p in rec.model.parameters())
    test = mixed.data.samples.index(Samples.TEST)
    predictions = rec.predict(mixed.data.samples, test)
    assert np.isfinite(predictions.margin).all()
    assert rec.card.metrics.test_auc == pytest.approx(
        utility(mixed.data.samples.label[test], predictions)["auc"], abs=1e-9
    )


def test_later_recipe_fields_leave_the_cache_key_while_at_their_old_value():
    old = Recipe(activation="gelu_new", train_precision="fp32")
    assert "activation" not in old.cache_spec() and "train_precision" not in old.cache_spec()
    assert Recipe().cache_spec() == {**Recipe().model_dump(), **REMOVED_FIELDS_AS_BEFORE}


def test_removed_recipe_fields_keep_their_old_value_in_the_key():
    """max_minutes left the recipe (training no longer depends on wall time); keys stay as they were."""
    assert "max_minutes" not in Recipe.model_fields
    assert Recipe().cache_spec()["max_minutes"] == 10.0


def test_training_is_seeded(synthetic):
    a = Workspace.open(dataset=synthetic, recipe=TINY_RECIPE.model_copy(update={"max_epochs": 1})).models.original(
        quiet=True
    )
    b = Workspace.open(dataset=synthetic, recipe=TINY_RECIPE.model_copy(update={"max_epochs": 1})).models.train_model(
        "original", quiet=True
    )
    for (name, pa), pb in zip(a.model.named_parameters(), b.model.parameters(), strict=True):
        assert torch.equal(pa, pb), name


def test_cache_round_trip_gives_identical_predictions(trained):
    ws, rec = trained
    again = Workspace.open(dataset=ws.data.dataset, recipe=TINY_RECIPE).models.load_model("original")
    assert again is not None and again.path == rec.path
    idx = np.arange(50)
    assert_close(rec.predict(ws.data.samples, idx).margin, again.predict(ws.data.samples, idx).margin)
    assert set(os.listdir(rec.path)) >= {"model.safetensors", "config.json", "vocab.json", "meta.json"}


def test_corrupt_cache_entry_is_rebuilt(trained):
    ws, rec = trained
    weights = rec.path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CorruptModelError, match="unreadable"):
        load_recommender(rec.path, ws.data.samples, ItemBackend())
    with pytest.warns(UserWarning, match="retraining"):
        assert ws.models.load_model("original") is None
    assert ws.models.original(quiet=True).path == rec.path


def test_vocabulary_mismatch_is_a_clear_error(trained):
    _, rec = trained
    bigger = build_samples(make_synthetic(n_users=120, n_items=60, seed=1))
    with pytest.raises(CureError, match="vocabulary lacks"):
        load_recommender(rec.path, bigger, ItemBackend())


def test_unknown_users_get_the_fallback_token(trained):
    ws, rec = trained
    s = ws.data.samples
    holdout_sample = np.flatnonzero(np.isin(s.user, s.holdout_users))[:3]
    ids = rec.encode(s, holdout_sample).input_ids
    assert (ids[:, 0] == rec.encoder.vocab.index[UNK_USER]).all()
    known_sample = s.index(Samples.TRAIN)[:3]
    assert (rec.encode(s, known_sample).input_ids[:, 0] != rec.encoder.vocab.index[UNK_USER]).all()
    assert rec.encode(s, known_sample).input_ids.shape[1] == 2 * s.config.history_len + 3


def test_checkpoint_loads_in_transformer_bridge(trained):
    ws, rec = trained
    bridge = load_bridge(rec.path)
    ids = rec.encode(ws.data.samples, np.arange(8)).input_ids
    with torch.no_grad():
        ours = rec.model(ids).logits
        theirs = bridge(ids, return_type="logits")
    torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=1e-4)


def test_llama_architecture_trains_and_boots(synthetic):
    recipe = Recipe(arch="llama", n_layer=1, n_head=2, d_model=16, d_mlp=32, max_epochs=1, batch_size=64)
    ws = Workspace.open(dataset=synthetic, recipe=recipe)
    rec = ws.models.original(quiet=True)
    assert rec.model.config.model_type == "llama"
    ids = rec.encode(ws.data.samples, np.arange(4)).input_ids
    with torch.no_grad():
        torch.testing.assert_close(
            load_bridge(rec.path)(ids, return_type="logits"), rec.model(ids).logits, atol=1e-4, rtol=1e-4
        )


def test_original_and_retrain_train_side_by_side(tmp_path, synthetic, monkeypatch):
    """With more than one thread, ensure_models runs two `cure train` workers and reports progress."""
    from cure_core.requests import user_request
    from tests.test_data import write_grouplens

    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    monkeypatch.setattr(repository, "available_cores", lambda: 2)
    ws = Workspace.open(data=write_grouplens(tmp_path / "ml", synthetic), recipe=TINY_RECIPE)
    request = user_request(ws.data.dataset, ws.data.samples, fraction=0.1, seed=2)
    seen = []
    original, retrain = ws.models.ensure_models(
        request, progress=lambda done, total, info: seen.append((done, total)), quiet=True
    )
    assert original.card.role == "original" and retrain.card.role == "retrain"
    assert original.card.threads == retrain.card.threads == 1  # two workers split the two cores
    assert {original.card.stopped_by, retrain.card.stopped_by} <= {"patience", "max_epochs"}
    assert retrain.card.train_samples == len(ws.data.sets(request).retain)
    assert not np.isin(ws.data.samples.user_codes(request.users), retrain.known_users).any()
    assert seen and seen[-1][0] == seen[-1][1] > 0


def test_recipe_json_overrides_and_refuses_bad_fields():
    from cure_core.model.recipe import Recipe, recipe_from_json

    assert recipe_from_json(None) is None and recipe_from_json("") is None
    assert recipe_from_json('{"n_layer": 2, "d_model": 32}') == Recipe(n_layer=2, d_model=32)
    with pytest.raises(CureError, match=r"n_layer.*recipe fields"):
        recipe_from_json('{"n_layer": 0}')
    with pytest.raises(CureError, match="not valid JSON"):
        recipe_from_json("{not json")
