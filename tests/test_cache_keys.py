"""Cache keys: one ``cache_key(kind, spec)``, whose schema version 1 of every kind names each
cache entry exactly as the code before it did (the values below were computed by that code), so
cached models, requests, runs, attributions, references and studies are found again."""

from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace

import pytest

from cure_core import cache_keys
from cure_core.cache_keys import KEY_SCHEMES, KeyScheme, cache_key
from cure_core.circuits import AttributionSettings
from cure_core.model.backends.item import ITEM_CAPABILITIES
from cure_core.model.card import ModelCard
from cure_core.model.recipe import RECIPE_V1_OVERRIDES, Recipe, TextRecipe
from cure_core.requests import ForgetRequest
from cure_core.studies.pareto import ParetoSettings
from cure_core.studies.stability import StabilitySettings
from cure_core.studies.store import StudyStore
from cure_core.unlearning.methods.config import UnlearnConfig
from cure_core.unlearning.runs import run_id
from cure_core.workspace import Workspace

DATA = SimpleNamespace(content_hash="3f2a9c1b7d4e", name="ml-100k")
REQUEST = ForgetRequest(kind="user", data_hash=DATA.content_hash, description="5%", users=["1", "7", "42"], seed=0)
TINY = Recipe(n_layer=1, n_head=2, d_model=16, d_mlp=32, max_epochs=2, patience=1, batch_size=64)

# computed by the key code of commit d558c71 (before cache_key) on the same inputs
MODEL_KEYS = {
    "default": ("original-ml-100k-b4b1880018", "retrain-user-4d829834-29541f0c5b"),
    "tiny": ("original-ml-100k-de3293e03d", "retrain-user-4d829834-911b639b31"),
    "v1": ("original-ml-100k-daec85990a", "retrain-user-4d829834-2b3c75825c"),
    "text": ("text-original-ml-100k-ca5b2e8b41", "text-retrain-user-4d829834-c81fe243c4"),
}
RECIPES = {"default": Recipe(), "tiny": TINY, "v1": Recipe(**RECIPE_V1_OVERRIDES), "text": TextRecipe()}


@pytest.mark.parametrize("name", MODEL_KEYS)
def test_model_folders_keep_their_names(name):
    ws = Workspace.open(recipe=RECIPES[name])
    ws.data.__dict__["dataset"] = DATA
    assert (ws.models.model_dir("original").name, ws.models.model_dir("retrain", REQUEST).name) == MODEL_KEYS[name]


def test_requests_attributions_runs_studies_and_references_keep_their_keys():
    assert REQUEST.id == "user-4d829834"
    interaction = ForgetRequest(
        kind="interaction", data_hash=DATA.content_hash, description="x", interactions=[("1", "50")]
    )
    assert interaction.id == "interaction-3ec06077"
    assert AttributionSettings().key() == "14175436e98f"
    assert AttributionSettings(corruption="user", method="eap", n_prompts=64).key() == "0a341cd517fd"
    original = SimpleNamespace(card=ModelCard(fingerprint="a" * 64), capabilities=ITEM_CAPABILITIES)
    retrain = SimpleNamespace(card=ModelCard(fingerprint="b" * 64), capabilities=ITEM_CAPABILITIES)
    assert run_id(original, retrain, REQUEST, UnlearnConfig(method="ga").id_json()) == "ga-08891a6ee3"
    lora = UnlearnConfig(method="cure", lora=True).id_json()
    assert run_id(original, None, REQUEST, lora, '{"x":1}') == "cure-4bef6f3897"
    context = {"weights": "a" * 64, "retrain": "b" * 64, "request": REQUEST.id}
    assert StudyStore("pareto", ParetoSettings(), context).key == "9ebc678756"
    recipe_context = {"data": DATA.content_hash, "recipe": Recipe().cache_spec()}
    assert StudyStore("stability", StabilitySettings.quick(), recipe_context).key == "5af2c38a5d"
    reference = {
        "original": "a" * 64,
        "retrain": "b" * 64,
        "request": REQUEST.id,
        "sizes": {"forget": 10, "retain": 90, "test": 20},
        "evaluation_cap": 2000,
    }
    assert cache_key("reference", reference) == "45ef32ce8ad0b5a5"


def test_version_one_hashes_the_spec_alone_and_a_later_version_names_other_entries(monkeypatch):
    spec = {"b": [1, 2.5], "a": "x"}
    expected = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
    for kind, scheme in KEY_SCHEMES.items():
        assert scheme.version == 1 and cache_key(kind, spec) == expected[: scheme.length]
    monkeypatch.setitem(cache_keys.KEY_SCHEMES, "run", KeyScheme(version=2, length=10))
    bumped = cache_key("run", spec)
    assert len(bumped) == 10 and bumped != expected[:10]
    assert bumped == hashlib.sha256(f"run v2\n{json.dumps(spec, sort_keys=True)}".encode()).hexdigest()[:10]


def test_a_pydantic_spec_is_hashed_as_its_own_json():
    settings = AttributionSettings(steps=7)
    assert cache_key("attribution", settings) == hashlib.sha256(settings.model_dump_json().encode()).hexdigest()[:12]
