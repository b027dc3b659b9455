"""The projected attribution engine against the split-input reference engine, edge by edge, on
tiny random GPT-2 (LayerNorm, fused c_attn), Llama and Qwen2 (RMSNorm, grouped-query
attention: 4 query heads, 2 key/value heads) bridges built from configs; and the memory
estimate's bookkeeping."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_engine_models import ARCHS, METRIC, equal_length_batch, pairs
from tiny_models import tiny_bridge
from tolerances import assert_close

from analysis.attribution import attribute
from analysis.errors import AnalysisInputError
from analysis.graph import QKV
from analysis.hooks import attached_hook_count, graph_shape
from analysis.memory import ModelSize, attribution_peak_bytes, plan_passes, working_set_bytes
from analysis.prompts import PromptBatch


@pytest.fixture(scope="module", params=ARCHS)
def bridge(request, tmp_path_factory):
    return tiny_bridge(request.param, tmp_path_factory.mktemp("tokenizer"))


def padded_batch(seed: int = 0) -> PromptBatch:
    clean, corrupt = pairs(seed=seed)
    batch = PromptBatch.from_pairs(clean, corrupt, torch.ones(len(clean)), pad_id=0)
    assert batch.attention_mask is not None and not batch.attention_mask.all()
    return batch


@pytest.mark.parametrize(("method", "steps"), [("eap", 1), ("eap-ig", 3)])
def test_projected_scores_equal_the_reference_engine_per_edge_on_a_left_padded_batch(bridge, method, steps):
    batches = [padded_batch(0), equal_length_batch(seed=2)]
    projected = attribute(bridge, batches, METRIC, method, steps=steps)
    reference = attribute(bridge, batches, METRIC, method, steps=steps, engine="reference")
    shape = graph_shape(bridge)
    assert np.abs(reference.scores).max() > 1e-3, "the corruption must give edges a score"
    for dsts, what in (
        (
            [
                shape.head_dst(layer, h, x)
                for layer in range(shape.n_layers)
                for x in QKV
                for h in range(shape.n_inputs(x))
            ],
            "q/k/v",
        ),
        ([shape.mlp_dst(layer) for layer in range(shape.n_layers)] + [shape.logits_dst], "MLP and logits"),
    ):
        assert_close(projected.scores[:, dsts], reference.scores[:, dsts], rel=1e-5, err_msg=f"edges into {what}")
    assert_close(projected.batch_scores, reference.batch_scores, rel=1e-5)
    assert_close(projected.metric_clean, reference.metric_clean, rel=1e-5)
    assert np.all(projected.scores[~shape.real_edge_mask()] == 0)


def _per_head_residuals_kept(bridge, engine: str) -> int:
    """How many tensors the backward keeps that hold one residual-stream vector per head or
    key/value head and token (``d_model`` last, ``n · tokens · d_model`` numbers for n = H or
    G), over an EAP-IG run of 2 steps (as many in a pass as the device's plan puts there)."""
    shape = graph_shape(bridge)
    d_model = int(bridge.cfg.d_model)
    batch = padded_batch(1)
    copies = plan_passes(bridge, shape, batch, 2, None)[1]
    per_head = {n * copies * batch.clean.numel() * d_model for n in (shape.n_heads, shape.kv_heads)}
    kept: list[torch.Tensor] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        kept.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        attribute(bridge, [batch], METRIC, "eap-ig", steps=2, engine=engine)  # type: ignore[arg-type]
    assert kept, "the backward must keep something"
    return sum(t.ndim >= 2 and t.shape[-1] == d_model and t.numel() in per_head for t in kept)


def test_projected_engine_keeps_no_per_head_residual_copies_for_the_backward(bridge):
    flags = (bridge.cfg.use_attn_result, bridge.cfg.use_split_qkv_input, bridge.cfg.use_hook_mlp_in)
    assert _per_head_residuals_kept(bridge, "projected") == 0
    assert _per_head_residuals_kept(bridge, "reference") > 0, "the reference engine keeps the split inputs"
    assert (bridge.cfg.use_attn_result, bridge.cfg.use_split_qkv_input, bridge.cfg.use_hook_mlp_in) == flags
    assert attached_hook_count(bridge) == 0


def test_unknown_engine_is_refused(bridge):
    with pytest.raises(AnalysisInputError, match="reference"):
        attribute(bridge, [padded_batch()], METRIC, "eap", engine="fast")  # type: ignore[arg-type]


def test_memory_estimate_reads_the_bridge_like_its_config_and_plans_within_it(bridge):
    shape = graph_shape(bridge)
    dtype = next(bridge.parameters()).dtype
    assert ModelSize.of_bridge(bridge, shape) == ModelSize.of_hf_config(bridge.original_model.config, dtype)
    size = ModelSize.of_bridge(bridge, shape)
    one, three = (attribution_peak_bytes(size, 4, 7, copies) for copies in (1, 3))
    assert 0 < one < three, "more IG copies at once need more memory"
    assert attribution_peak_bytes(size, 8, 7, 1) == 2 * one, "every term grows with the prompts"
    batch = equal_length_batch()
    budget = working_set_bytes(bridge, shape, len(batch), batch.clean.shape[1], 2)
    assert plan_passes(bridge, shape, batch, 3, budget) == (len(batch), 2)
    assert plan_passes(bridge, shape, batch, 3, 1) == (1, 1)


def test_a_llama_config_reads_as_its_shape_and_the_reference_engine_is_predicted_larger():
    """LLaMA-7B's shape (32 layers, d_model 4096, 32 heads, SwiGLU 11008) at 8 × 300 tokens in bf16:
    the per-head copies the reference engine keeps outweigh the projected engine's whole pass."""
    from transformers import LlamaConfig

    config = LlamaConfig(
        hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32
    )
    size = ModelSize.of_hf_config(config, torch.bfloat16)
    assert (size.n_src, size.gated_mlp, size.dtype_bytes) == (1057, True, 2)
    assert attribution_peak_bytes(size, 8, 300, 1) < attribution_peak_bytes(size, 8, 300, 1, engine="reference")
