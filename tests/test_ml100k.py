"""Integration tests on the real MovieLens-100K (read from the recbole wheel, fetched once)."""

import numpy as np
import pytest
import torch

from cure_core.baselines import baseline_aucs
from cure_core.circuits import AttributionSettings, circuit_context, find_circuit, get_attribution
from cure_core.data import Samples
from cure_core.metrics import utility
from cure_core.model.recipe import Recipe
from cure_core.requests import item_request, request_sets, trainable_users
from cure_core.workspace import Workspace
from tests.conftest import new_cache

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def module_cache(tmp_path_factory):
    """One temporary cache for this module, so the model trained once below is found by each test."""
    root = new_cache(tmp_path_factory)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CURE_CACHE", str(root))
        yield root


@pytest.fixture(autouse=True)
def isolated_cache(module_cache):
    """Overrides conftest's per-test cache: these tests share the module's."""
    torch.manual_seed(0)
    return module_cache


@pytest.fixture(scope="module")
def ws(module_cache):
    return Workspace.open()


def test_summary_numbers(ws):
    summary = ws.data.summary()
    assert (summary["users"], summary["items"], summary["ratings"]) == (943, 1682, 100_000)
    assert summary["samples"] == 100_000 - 943 * 10
    assert summary["holdout_users"] == 47
    assert (
        summary["train_samples"] + summary["valid_samples"] + summary["test_samples"] + summary["holdout_samples"]
        < summary["samples"]
    )
    assert 0.5 < summary["train_positive_rate"] < 0.6
    assert ws.data.titles["1"] == "Toy Story (1995)"


def test_default_request_sets_are_disjoint_and_complete(ws):
    request = ws.data.default_request()
    sets = ws.data.sets(request)
    s = ws.data.samples
    assert len(request.users) == round(0.05 * len(trainable_users(s)))
    assert len(np.intersect1d(sets.forget, sets.retain)) == 0
    np.testing.assert_array_equal(np.union1d(sets.forget, sets.retain), s.index(Samples.TRAIN))
    forget_users = s.user_codes(request.users)
    for name in ("retain", "valid", "test", "holdout"):
        assert not np.isin(s.user[getattr(sets, name)], forget_users).any(), name
    assert sets.sizes()["holdout"] > 1000 and sets.sizes()["forget"] > 1000


def test_childrens_genre_request(ws):
    request = item_request(ws.data.dataset, ws.data.samples, genre="Children's", scope="target")
    sets = request_sets(request, ws.data.samples)
    childrens = ws.data.samples.item_codes(ws.data.dataset.genre_items("Children's"))
    assert np.isin(ws.data.samples.target[sets.forget], childrens).all()
    assert not np.isin(ws.data.samples.target[sets.retain], childrens).any()


def test_v1_recipe_keeps_its_cache_key(ws):
    """Recipe fields added later must not orphan models (and runs and studies) cached before them."""
    from cure_core.model.recipe import RECIPE_V1_OVERRIDES

    v1 = ws.with_recipe(Recipe(**RECIPE_V1_OVERRIDES))
    assert v1.models.model_dir("original").name == "original-ml-100k-11cf918927"
    assert ws.models.model_dir("original") != v1.models.model_dir("original")


@pytest.fixture(scope="module")
def small_ws(ws):
    """A small model trained for one epoch (shared by the tests below)."""
    small = Workspace.open(
        recipe=Recipe(
            n_layer=2, n_head=2, d_model=64, d_mlp=128, max_epochs=1, batch_size=256, lr=3e-3, train_precision="fp32"
        ),
        dataset=ws.data.dataset,
    )
    small.models.original(quiet=True)
    return small


def test_short_training_records_the_test_auc_of_its_weights(ws, small_ws):
    """How a one-epoch model compares with the item like-rate baseline is a finding (docs/results.md
    reports it for the default model); here: both are AUCs and the recorded one is the saved
    weights' own, recomputed from their predictions."""
    rec = small_ws.models.original(quiet=True)
    s = ws.data.samples
    test = s.index(Samples.TEST)
    baselines = baseline_aucs(s, s.index(Samples.TRAIN), test)
    assert all(0 <= v <= 1 for v in baselines.values())
    assert rec.card.metrics.test_auc == pytest.approx(utility(s.label[test], rec.predict(s, test))["auc"], abs=1e-9)


@pytest.mark.parametrize("corruption", ["history", "target"])
def test_circuits_on_the_default_request(small_ws, corruption):
    """On real data the circuits' exact faithfulness runs from 0 (nothing kept) to 1 (everything
    kept) on held-out prompts (how much the corruption hurts is the model's business)."""
    settings = AttributionSettings(corruption=corruption, n_prompts=64, n_eval=64)
    ctx = circuit_context(small_ws, small_ws.data.default_request(), device="cpu")
    forget = get_attribution(ctx, "forget", settings, quiet=True)
    assert forget.n_prompts == 64 and np.isfinite(forget.scores).all()
    result = find_circuit(ctx, forget, "forget", settings, "top-n", 40, curve_points=5, quiet=True)
    assert abs(result.faithfulness.gap) > 1e-6, "the corruption must move the metric for F to mean anything"
    empty, full = result.curve[0][1], result.curve[-1][1]
    # F divides by the gap: the float error of the patched metrics (relative to their size; the
    # patched and plain forwards sum in different orders) grows by size/gap
    scale = max(abs(full.metric_clean), abs(full.metric_corrupt)) / abs(full.gap)
    assert empty.value == pytest.approx(0.0, abs=1e-4 * scale) and full.value == pytest.approx(1.0, abs=1e-4 * scale)
