"""The tiny recipes the tests train, and the behaviour fingerprint with them.

They are fixed: ``tests/behaviour_fingerprint.py`` trains these same recipes, so changing one
changes every fingerprint and makes them incomparable with files written earlier. A test that
needs another recipe derives one (``TINY_RECIPE.model_copy(update=...)``) instead.
"""

from __future__ import annotations

from typing import Any

from cure_core.model.recipe import Recipe, TextRecipe

TINY_SHAPE: dict[str, Any] = {"n_layer": 2, "n_head": 2, "d_model": 32, "d_mlp": 64}
"""The architecture both tiny recipes share."""

# float32 training: bf16 autocast rounds differently on CPUs with and without native bf16, so
# tests that compare two trainings or a training with its cached copy use fp32 (one test trains
# the bf16 default on purpose)
TINY_RECIPE = Recipe(**TINY_SHAPE, max_epochs=3, batch_size=32, lr=3e-3, patience=3, train_precision="fp32")
"""The item-token model's recipe."""

TINY_TEXT = TextRecipe(
    **TINY_SHAPE,
    vocab_size=400,
    tokenizer_prompts=300,
    batch_size=16,
    max_steps=6,
    eval_every=3,
    eval_samples=100,
    train_precision="fp32",
)
"""The text model's recipe (``--recipe text``)."""
