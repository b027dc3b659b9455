"""EAP against exact single-edge patching, shared by the item-model and the GQA-model tests."""

from __future__ import annotations

import numpy as np
import torch

from analysis.attribution import attribute
from analysis.circuit import Circuit
from analysis.faithfulness import faithfulness_curve
from analysis.graph import GraphShape
from analysis.hooks import graph_shape
from analysis.prompts import Metric, PromptBatch


def single_edge_patching(
    bridge, vocab: int, first_token: int, metric: Metric
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]], GraphShape]:
    """A small perturbation: the corrupted token's embedding is the clean one's plus 1% noise.

    Returns, for every real edge, the exact effect of cutting it alone (metric with the edge
    patched minus the clean metric) and EAP's estimate, with the edges and the graph shape. The
    embedding row is restored afterwards, also after an error.
    """
    embedding = bridge.original_model.get_input_embeddings().weight
    clean = torch.randint(first_token, vocab - 1, (8, 6), generator=torch.Generator().manual_seed(1))
    clean[:, 2] = vocab - 2
    with torch.no_grad():
        original = embedding[vocab - 1].clone()
        embedding[vocab - 1] = (
            embedding[vocab - 2]
            + 0.01
            * torch.randn(embedding.shape[1], generator=torch.Generator().manual_seed(2))
            * embedding[vocab - 2].norm()
        )
    try:
        corrupt = clean.clone()
        corrupt[:, 2] = vocab - 1
        batches = [PromptBatch(clean, corrupt, torch.ones(len(clean)))]
        shape = graph_shape(bridge)
        eap = attribute(bridge, batches, metric, "eap")
        edges = list(zip(*np.nonzero(shape.real_edge_mask()), strict=True))
        circuits = []
        for s, t in edges:
            mask = shape.real_edge_mask().copy()
            mask[s, t] = False
            circuits.append(Circuit(shape, mask))
        results = faithfulness_curve(bridge, batches, metric, circuits)
        exact = np.array([r.metric_circuit - r.metric_clean for r in results])
        estimate = np.array([eap.scores[s, t] for s, t in edges])
        return exact, estimate, edges, shape
    finally:
        with torch.no_grad():
            embedding[vocab - 1] = original
