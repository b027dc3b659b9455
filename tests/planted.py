"""Synthetic attributions with planted node scores, for the module-group tests (no model run)."""

from __future__ import annotations

import numpy as np

from analysis.attribution import Attribution
from analysis.graph import GraphShape


def planted_attribution(
    shape: GraphShape, node_scores: np.ndarray, n_batches: int = 4, noise: float = 0.0, seed: int = 0
) -> Attribution:
    """Planted node scores on the edges into the logits, each batch's scaled by 1 + ``noise`` × a
    seeded normal draw; every other edge is zero."""
    rng = np.random.default_rng(seed)
    batch = np.zeros((n_batches, shape.n_src, shape.n_dst))
    for b in range(n_batches):
        batch[b, :, shape.logits_dst] = node_scores * (1 + noise * rng.normal(size=len(node_scores)))
    return Attribution(shape, "eap", 1, batch.mean(0), batch, np.zeros(8), np.zeros(8))
