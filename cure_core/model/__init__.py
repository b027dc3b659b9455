"""Trained recommenders: recipe, training loop, scoring and the checkpoint store."""
