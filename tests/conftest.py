"""Shared fixtures: an isolated cache, synthetic data and a tiny trained model (seeded)."""

from __future__ import annotations

import pytest
import torch

from cure_core.data import build_samples, make_synthetic
from cure_core.model.recipe import Recipe
from cure_core.workspace import Workspace

TINY_RECIPE = Recipe(n_layer=2, n_head=2, d_model=32, d_mlp=64, max_epochs=3, batch_size=32, lr=3e-3, patience=3)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Every test writes its own cache; ML-100K files are shared across the session."""
    root = tmp_path_factory.mktemp("cache")
    shared = tmp_path_factory.getbasetemp() / "shared-downloads"
    shared.mkdir(exist_ok=True)
    (root / "downloads").symlink_to(shared, target_is_directory=True)
    monkeypatch.setenv("CURE_CACHE", str(root))
    torch.manual_seed(0)
    return root


@pytest.fixture(scope="session")
def synthetic():
    return make_synthetic(n_users=100, n_items=40, seed=0)


@pytest.fixture(scope="session")
def synthetic_samples(synthetic):
    return build_samples(synthetic)


@pytest.fixture
def tiny_ws(synthetic):
    return Workspace(dataset=synthetic, recipe=TINY_RECIPE)
