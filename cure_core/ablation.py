"""What ablating heads and MLPs does to the recommender's forget-set and test metrics.

Probes are seeded samples of the request's forget and test sets; the margin
logit(Yes) − logit(No) of every probe prompt is read with the modules ablated
(:func:`analysis.ablation.ablated_metric`) and without, and turned into AUCs.
Embedding rows are not ablated here: they are not outputs of a module.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.ablation import AblationMode, ablated_metric
from cure_core.circuits import AttributionSettings, CircuitContext, answer_metric, prompt_batches
from cure_core.metrics import safe_auc


def ablation_table(
    ctx: CircuitContext,
    modules: list[str],
    mode: AblationMode,
    corruption: str = "history",
    n_probe: int = 256,
    seed: int = 0,
) -> pd.DataFrame:
    """Per set (forget, test): AUC and mean margin without and with ``modules`` ablated."""
    settings = AttributionSettings(corruption=corruption, metric="margin", batch_size=64, seed=seed)
    rng = np.random.default_rng(seed)
    rows = []
    for name, idx in (("forget", ctx.sets.forget), ("test", ctx.sets.test)):
        probe = np.sort(rng.choice(idx, size=min(n_probe, len(idx)), replace=False))
        batches = prompt_batches(ctx.rec, ctx.samples, probe, ctx.request, settings)
        labels = ctx.samples.label[batches.idx]  # text mode drops probes without a same-length corruption
        with ctx.rec.lock:  # hooks on a bridge that other app sessions share (Recommender.lock)
            before = ablated_metric(ctx.bridge, batches, answer_metric(ctx.rec), [], mode)
            after = ablated_metric(ctx.bridge, batches, answer_metric(ctx.rec), modules, mode) if modules else before
        rows.append(
            {
                "set": name,
                "prompts": len(batches.idx),
                "AUC": safe_auc(labels, before),
                "AUC ablated": safe_auc(labels, after),
                "mean margin": float(before.mean()),
                "mean margin ablated": float(after.mean()),
                "mean |margin change|": float(np.abs(after - before).mean()),
            }
        )
    table = pd.DataFrame(rows).set_index("set")
    table["AUC change"] = table["AUC ablated"] - table["AUC"]
    return table
