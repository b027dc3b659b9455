"""Correctness of the attribution engine on tiny random GPT-2 and Llama bridges (seconds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from patching import single_edge_patching
from scipy.stats import spearmanr
from tiny_models import VOCAB, save_tokenizer, tiny_model
from tolerances import assert_close

from analysis.attribution import attribute
from analysis.circuit import Circuit
from analysis.faithfulness import faithfulness_curve
from analysis.hooks import attached_hook_count, graph_shape
from analysis.prompts import LogitDiff, PromptBatch
from cure_core.checkpoints.bridge import load_bridge
from cure_core.prompts import SPECIAL_TOKENS

POS, NEG = 5, 6  # <yes>, <no> in the special tokens


def _save_tiny(folder, arch: str) -> None:
    """The tiny model (Llama with 2 query heads, no grouped-query attention) and its tokenizer."""
    tiny_model(arch, heads=2, kv_heads=2).save_pretrained(folder, safe_serialization=True)
    save_tokenizer(folder)


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def bridge(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    _save_tiny(folder, request.param)
    return load_bridge(folder)


@pytest.fixture(scope="module")
def gpt2_bridge(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpt2-small-perturbation")
    _save_tiny(folder, "gpt2")
    return load_bridge(folder)


def _batches(n: int = 12, seq: int = 7, swaps: int = 3, seed: int = 0) -> list[PromptBatch]:
    """Random prompts; the corrupted copy changes ``swaps`` positions (not the last one)."""
    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(len(SPECIAL_TOKENS), VOCAB, (n, seq), generator=g)
    corrupt = clean.clone()
    for row in corrupt:
        where = torch.randperm(seq - 1, generator=g)[:swaps]
        row[where] = torch.randint(len(SPECIAL_TOKENS), VOCAB, (swaps,), generator=g)
    return [
        PromptBatch(clean[i : i + 5], corrupt[i : i + 5], torch.ones(len(clean[i : i + 5]))) for i in range(0, n, 5)
    ]


METRIC = LogitDiff(POS, NEG)


def test_full_graph_is_faithful_and_empty_graph_is_not(bridge):
    shape = graph_shape(bridge)
    full, empty = faithfulness_curve(bridge, _batches(), METRIC, [Circuit.full(shape), Circuit.empty(shape)])
    assert abs(full.gap) > 1e-3, "the corruption must move the metric for this test to mean anything"
    assert full.value == pytest.approx(1.0, abs=1e-4)
    assert empty.value == pytest.approx(0.0, abs=1e-4)
    assert full.metric_circuit == pytest.approx(full.metric_clean, abs=1e-5)
    assert empty.metric_circuit == pytest.approx(empty.metric_corrupt, abs=1e-5)


def test_eap_ig_is_complete_with_many_steps(bridge):
    """IG on the input embeddings: per prompt, the input node's edges sum to m(corrupt) −
    m(clean), within 3% of the typical effect (a right Riemann sum of 200 steps on a random,
    strongly non-linear model)."""
    batches = [
        PromptBatch(b.clean[i : i + 1], b.corrupt[i : i + 1], b.weight[i : i + 1])
        for b in _batches()
        for i in range(len(b))
    ]
    result = attribute(bridge, batches, METRIC, "eap-ig", steps=200)
    effects = result.metric_corrupt - result.metric_clean
    assert np.abs(effects).mean() > 1e-2, "the corruption must move the metric for this test to mean anything"
    np.testing.assert_allclose(
        result.batch_scores[:, 0].sum(axis=1), effects, rtol=0.03, atol=0.03 * np.abs(effects).mean()
    )


def test_eap_equals_eap_ig_with_one_step(bridge):
    eap = attribute(bridge, _batches(), METRIC, "eap")
    one = attribute(bridge, _batches(), METRIC, "eap-ig", steps=1)
    assert_close(eap.scores, one.scores, rel=1e-5)
    assert eap.batch_scores.shape == (3, *eap.scores.shape)
    assert np.all(eap.scores[~eap.shape.real_edge_mask()] == 0)


def test_eap_ranks_edges_like_exact_single_edge_patching(gpt2_bridge):
    """For a small perturbation (a corrupted token whose embedding is the clean one plus 1%
    noise) EAP's first-order estimate must rank edges like exact patching: Spearman ≥ 0.9."""
    exact, estimate, edges, _ = single_edge_patching(gpt2_bridge, VOCAB, len(SPECIAL_TOKENS), METRIC)
    rho = spearmanr(exact, estimate).statistic
    print(f"EAP vs exact single-edge patching: Spearman {rho:.3f} over {len(edges)} edges")
    assert rho >= 0.9, f"rank correlation {rho:.3f}"


def test_hooks_and_flags_are_restored_after_an_error(bridge):
    flags = (bridge.cfg.use_attn_result, bridge.cfg.use_split_qkv_input, bridge.cfg.use_hook_mlp_in)
    grads = [p.requires_grad for p in bridge.parameters()]

    def broken_metric(logits: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("metric failed mid-run")

    with pytest.raises(RuntimeError, match="mid-run"):
        attribute(bridge, _batches(), broken_metric, "eap-ig", steps=3)
    with pytest.raises(RuntimeError, match="mid-run"):
        faithfulness_curve(bridge, _batches(), broken_metric, [Circuit.empty(graph_shape(bridge))])
    assert attached_hook_count(bridge) == 0
    assert (bridge.cfg.use_attn_result, bridge.cfg.use_split_qkv_input, bridge.cfg.use_hook_mlp_in) == flags
    assert [p.requires_grad for p in bridge.parameters()] == grads


def test_mismatched_prompt_pairs_are_refused():
    with pytest.raises(ValueError, match="same shape"):
        PromptBatch(torch.zeros(2, 5, dtype=torch.long), torch.zeros(2, 6, dtype=torch.long), torch.ones(2))


def test_unknown_method_is_refused(bridge):
    with pytest.raises(ValueError, match="eap-ig"):
        attribute(bridge, _batches(), METRIC, "acdc")  # type: ignore[arg-type]


def test_patching_every_edge_into_a_module_equals_feeding_it_the_corrupted_input(bridge):
    """Independent check of the inner patching: cut every edge into MLP 0 and it must behave as
    if its input were replaced by the corrupted run's MLP-0 input (read from TransformerLens'
    own activation cache)."""
    shape = graph_shape(bridge)
    batch = _batches()[0]
    mask = shape.real_edge_mask().copy()
    mask[:, shape.mlp_dst(0)] = False
    (patched,) = faithfulness_curve(bridge, [batch], METRIC, [Circuit(shape, mask)])
    bridge.set_use_hook_mlp_in(True)
    try:
        with torch.no_grad():
            _, cache = bridge.run_with_cache(batch.corrupt)
            corrupted_input = cache["blocks.0.hook_mlp_in"].clone()
            with bridge.hooks(fwd_hooks=[("blocks.0.hook_mlp_in", lambda x, hook: corrupted_input)]):
                reference = METRIC(bridge(batch.clean)).mean()
    finally:
        bridge.set_use_hook_mlp_in(False)
    assert abs(patched.metric_circuit - patched.metric_clean) > 1e-3
    assert patched.metric_circuit == pytest.approx(float(reference), abs=1e-5)


@pytest.mark.parametrize("module", ["a0.h1", "m0", "a1.h0"])
def test_corrupt_ablation_equals_cutting_every_edge_out_of_the_module(bridge, module):
    """Two independent routes to the same intervention: replacing a module's output (at
    hook_z / hook_mlp_out) with its corrupted value, and patching all its outgoing edges."""
    from analysis.ablation import ablated_metric

    shape = graph_shape(bridge)
    batch = _batches()[0]
    mask = shape.real_edge_mask().copy()
    mask[shape.src_names.index(module)] = False
    (cut,) = faithfulness_curve(bridge, [batch], METRIC, [Circuit(shape, mask)])
    ablated = ablated_metric(bridge, [batch], METRIC, [module], "corrupt")
    assert ablated.mean() == pytest.approx(cut.metric_circuit, abs=1e-5)
    assert abs(ablated.mean() - cut.metric_clean) > 1e-4
    assert_close(ablated_metric(bridge, [batch], METRIC, [], "zero"), METRIC(bridge(batch.clean)).detach().numpy())
    for mode in ("zero", "mean"):
        assert not np.allclose(
            ablated_metric(bridge, [batch], METRIC, [module], mode), ablated_metric(bridge, [batch], METRIC, [], mode)
        )
    assert attached_hook_count(bridge) == 0
    with pytest.raises(ValueError, match="cannot ablate"):
        ablated_metric(bridge, [batch], METRIC, ["u:1"], "zero")


def test_attention_pattern_is_a_causal_distribution_per_query(bridge):
    """The page's attention heatmap reads the pattern hook named by ``BridgeHooks``."""
    from analysis.activations import attention_pattern

    ids = _batches()[0].clean
    pattern = attention_pattern(bridge, ids, layer=1, head=0)
    assert pattern.shape == (ids.shape[1], ids.shape[1])
    np.testing.assert_allclose(pattern.sum(axis=1), 1.0, atol=1e-5)
    assert np.all(np.triu(pattern, k=1) == 0) and attached_hook_count(bridge) == 0
