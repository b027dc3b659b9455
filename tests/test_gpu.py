"""Checks that need a CUDA GPU (skipped without one; ``benchmarks/gpu_check.sh`` runs them on a
lent GPU machine): a user's checkpoint on CUDA in fp32 and bf16 — scoring, the bridge and
attribution — against the same computation on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cure_core.circuits import AttributionSettings, circuit_context, get_attribution
from cure_core.model_source import ModelSource
from cure_core.requests import user_request
from cure_core.workspace import Workspace

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
SETTINGS = AttributionSettings(method="eap", n_prompts=8, n_eval=4, batch_size=4, corruption="target")


def _workspace(synthetic, folders, **source) -> Workspace:
    model, adapter = folders
    return Workspace.open(
        dataset=synthetic, source=ModelSource(model=str(model), adapter=str(adapter), profile="compact", **source)
    )


@pytest.mark.parametrize("arch", ["qwen2", "llama", "gpt2"])
def test_cuda_scores_and_attribution_equal_the_cpu(synthetic, user_checkpoints, arch):
    results = {}
    for device in ("cpu", "cuda"):
        ws = _workspace(synthetic, user_checkpoints[arch], device=device)
        request = user_request(ws.data.dataset, ws.data.samples, fraction=0.1, seed=0)
        margin = ws.models.original().predict(ws.data.samples, np.arange(32)).margin
        ctx = circuit_context(ws, request)
        assert str(ws.models.original().device).startswith(device)
        results[device] = (margin, get_attribution(ctx, "forget", SETTINGS).scores)
    np.testing.assert_allclose(results["cuda"][0], results["cpu"][0], atol=1e-3)
    cpu, cuda = results["cpu"][1], results["cuda"][1]
    assert np.abs(cuda - cpu).max() <= 1e-3 * max(np.abs(cpu).max(), 1e-6)


def test_bf16_attribution_on_cuda_is_finite_and_close(synthetic, user_checkpoints):
    scores = {}
    for dtype in ("fp32", "bf16"):
        ws = _workspace(synthetic, user_checkpoints["qwen2"], device="cuda", dtype=dtype)
        request = user_request(ws.data.dataset, ws.data.samples, fraction=0.1, seed=0)
        assert next(ws.models.original().model.parameters()).dtype == (
            torch.bfloat16 if dtype == "bf16" else torch.float32
        )
        scores[dtype] = get_attribution(circuit_context(ws, request), "forget", SETTINGS).scores
    assert np.isfinite(scores["bf16"]).all()
    top = np.argsort(-np.abs(scores["fp32"]), axis=None)[:20]
    corr = np.corrcoef(scores["fp32"].flat[top], scores["bf16"].flat[top])[0, 1]
    assert corr > 0.9  # bf16 keeps 8 bits of mantissa: the large scores keep their values, not their digits
