"""The text-mode recommender trained here (``--recipe text``): recipe selection, training,
the cache folder and its loader, on synthetic data with a tiny model."""

import numpy as np
import pytest
import torch

from cure_core import cli
from cure_core.errors import CureError
from cure_core.model.backends.text import rating_token_ids, text_tokenizer
from cure_core.model.card import read_card
from cure_core.model.recipe import Recipe, TextRecipe, recipe_from_json
from cure_core.profiles import ProfileEncoder, PromptWriter, load_profile
from cure_core.workspace import Workspace
from tests.test_data import write_grouplens
from tests.tiny_recipes import TINY_TEXT


@pytest.fixture(scope="module")
def text_ws(synthetic, tmp_path_factory):
    """A workspace on the tiny text recipe with its Original trained once (temp cache)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("CURE_CACHE", str(tmp_path_factory.mktemp("text-cache")))
    ws = Workspace.open(dataset=synthetic, recipe=TINY_TEXT)
    ws.models.original(quiet=True)
    yield ws
    mp.undo()


@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [
        (None, None, type(None)),
        ("text", None, TextRecipe),
        ('{"kind": "text", "n_layer": 2}', None, TextRecipe),
        ('{"n_layer": 2}', "text", TextRecipe),
        ('{"n_layer": 2}', None, Recipe),
        (None, "item", type(None)),
    ],
)
def test_recipe_selection(text, kind, expected):
    assert type(recipe_from_json(text, kind)) is expected


def test_text_recipe_fields_are_checked():
    with pytest.raises(CureError, match="max_step"):
        recipe_from_json('{"max_step": 3}', "text")
    with pytest.raises(CureError, match="n_kv_head"):
        recipe_from_json('{"n_kv_head": 2}', "text")  # grouped-query attention needs llama
    assert recipe_from_json('{"arch": "llama", "n_kv_head": 2}', "text").n_kv_head == 2


def test_rating_tokens_are_the_like_words(synthetic):
    from cure_core.data import build_samples

    samples = build_samples(synthetic)
    writer = PromptWriter(load_profile("compact"), synthetic, samples)
    tokenizer = text_tokenizer(writer, samples, np.arange(len(samples)), TINY_TEXT)
    encoder = ProfileEncoder(load_profile("compact"), tokenizer, synthetic, samples)
    ids = rating_token_ids(encoder, samples)
    liked = tokenizer(" liked", add_special_tokens=False)["input_ids"]
    disliked = tokenizer(" disliked", add_special_tokens=False)["input_ids"]
    # the first differing tokens of the two words; what both words share is not a rating token
    expected = {a for a, b in zip(liked, disliked, strict=False) if a != b} | {
        b for a, b in zip(liked, disliked, strict=False) if a != b
    }
    assert set(ids.tolist()) == expected


def test_trained_text_model_round_trips(text_ws):
    rec = text_ws.models.original()
    assert rec.checkpoint is not None and rec.path.name.startswith("text-original-")
    card = read_card(rec.path)
    assert card.kind == rec.card.kind == "text-recipe" and card.recipe == TINY_TEXT
    assert 1 <= len(card.curve) <= 2 and card.curve[-1]["step"] <= TINY_TEXT.max_steps
    assert card.fingerprint is None and rec.card.fingerprint and rec.card.file_sha256 == card.file_sha256
    assert (rec.path / "model.safetensors").exists() and (rec.path / "tokenizer.json").exists()
    idx = np.arange(20)
    fresh = Workspace.open(dataset=text_ws.data.dataset, recipe=TINY_TEXT).models.load_model("original")
    assert fresh is not None
    np.testing.assert_array_equal(
        rec.predict(text_ws.data.samples, idx).margin, fresh.predict(text_ws.data.samples, idx).margin
    )


def test_text_training_is_deterministic(text_ws):
    """Training the same recipe again on the same data gives bit-identical weights."""
    again = text_ws.models.train_model("original", quiet=True)
    first = dict(text_ws.models.original().model.named_parameters())
    for name, param in again.model.named_parameters():
        assert torch.equal(param, first[name]), name


def test_retrain_tokenizer_never_reads_forget_prompts(text_ws):
    """Retrain's tokenizer is trained on its own training prompts: the retain set only."""
    request = text_ws.data.default_request()
    sets = text_ws.models.train_sets("retrain", request)
    assert not np.isin(sets.train, text_ws.data.sets(request).forget).any()
    retrain = text_ws.models.retrain(request, quiet=True)
    assert retrain.path != text_ws.models.original().path and retrain.checkpoint is not None


def test_cli_trains_the_text_recipe(capsys, synthetic, tmp_path, monkeypatch):
    monkeypatch.setenv("CURE_CACHE", str(tmp_path / "cache"))
    data = str(write_grouplens(tmp_path / "ml", synthetic))
    code = cli.main(["train", "--recipe", "text", "--recipe-json", TINY_TEXT.model_dump_json(), "--data", data])
    out = capsys.readouterr().out
    assert code == 0 and "step     3 (epoch" in out and "test AUC" in out


def test_recipe_with_a_user_model_is_one_line(capsys, user_checkpoints):
    model, _ = user_checkpoints["gpt2"]
    code = cli.main(["evaluate", "--recipe", "text", "--model", str(model)])
    err = capsys.readouterr().err
    assert (
        code == 2 and "--model (or CURE_MODEL) gives your own checkpoint" in err and len(err.strip().splitlines()) == 1
    )
