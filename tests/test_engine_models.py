"""The attribution engine on tiny random GPT-2, Llama and Qwen2 bridges with grouped-query
attention (4 query heads, 2 key/value heads), booted in memory: bounded-memory attribution
equals the dense reference, GQA graphs are exact, left padding changes nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from patching import single_edge_patching
from scipy.stats import spearmanr
from tiny_models import FIRST, VOCAB, tiny_bridge
from tolerances import assert_close

from analysis import memory
from analysis.ablation import ablated_metric
from analysis.activations import new_source_buffer, run_sources, source_capture_hooks
from analysis.attribution import attribute
from analysis.circuit import Circuit
from analysis.errors import AnalysisInputError
from analysis.faithfulness import faithfulness_curve
from analysis.graph import QKV
from analysis.hooks import edge_hooks, graph_shape, metric_input_hooks, run_kwargs
from analysis.memory import plan_passes, working_set_bytes
from analysis.prompts import LogitDiff, PromptBatch, PromptLengthError

METRIC = LogitDiff(5, 6)
ARCHS = ("gpt2", "llama", "qwen2")


@pytest.fixture(scope="module", params=ARCHS)
def bridge(request, tmp_path_factory):
    return tiny_bridge(request.param, tmp_path_factory.mktemp("tokenizer"))


def pairs(
    n: int = 5, lengths: tuple[int, ...] = (7, 4, 6, 7, 3), swaps: int = 2, seed: int = 0
) -> tuple[list[list[int]], list[list[int]]]:
    """Random prompts of different lengths; the corrupted copy changes ``swaps`` tokens (never the last)."""
    g = torch.Generator().manual_seed(seed)
    clean, corrupt = [], []
    for i in range(n):
        row = torch.randint(FIRST, VOCAB, (lengths[i % len(lengths)],), generator=g)
        bad = row.clone()
        where = torch.randperm(len(row) - 1, generator=g)[:swaps]
        bad[where] = torch.randint(FIRST, VOCAB, (len(where),), generator=g)
        clean.append(row.tolist())
        corrupt.append(bad.tolist())
    return clean, corrupt


def equal_length_batch(n: int = 6, seq: int = 7, seed: int = 1) -> PromptBatch:
    clean, corrupt = pairs(n, (seq,), swaps=3, seed=seed)
    return PromptBatch.from_pairs(clean, corrupt, torch.ones(n), pad_id=0)


def dense_reference(bridge, batch: PromptBatch, steps: int) -> np.ndarray:
    """The unbounded algorithm: keep every reader's gradient, then one float64 matmul."""
    shape = graph_shape(bridge)
    n, mask = len(batch), batch.attention_mask
    with edge_hooks(bridge) as hooks:
        corrupt, corrupt_embed, _ = run_sources(
            bridge, hooks, shape, batch.corrupt, metric_input_hooks(hooks, METRIC), mask
        )
        clean = new_source_buffer(shape, batch.clean, corrupt.shape[-1], corrupt.dtype)
        alphas = torch.arange(1, steps + 1, dtype=corrupt.dtype) / steps
        readers: dict[str, torch.Tensor] = {}

        def interpolate(x, hook):
            path = corrupt_embed + alphas[:-1, None, None, None] * (x[-n:] - corrupt_embed)
            return torch.cat([path.reshape(-1, *x.shape[1:]), x[-n:]]).detach().requires_grad_(True)

        def keep(name):
            def hook(x, hook):
                readers[name] = x.clone()
                return readers[name]

            return hook

        names = (
            [hooks.head_input(layer, x) for layer in range(shape.n_layers) for x in QKV]
            + [hooks.mlp_in(layer) for layer in range(shape.n_layers)]
            + [hooks.final_resid]
        )
        fwd = [
            (hooks.embed, interpolate),
            *source_capture_hooks(hooks, shape, clean),
            *[(name, keep(name)) for name in names],
            *metric_input_hooks(hooks, METRIC),
        ]
        with torch.enable_grad(), bridge.hooks(fwd_hooks=fwd):
            values = METRIC(
                bridge(batch.clean.repeat(steps, 1), **run_kwargs(None if mask is None else mask.repeat(steps, 1)))
            ) * batch.weight.repeat(steps)
            grads = dict(zip(names, torch.autograd.grad(values.sum(), [readers[name] for name in names]), strict=True))
    mean = {name: g.reshape(steps, n, *g.shape[1:]).mean(0).double() for name, g in grads.items()}
    rows = []
    for layer in range(shape.n_layers):
        rows += [
            mean[hooks.head_input(layer, x)]
            .permute(2, 0, 1, 3)
            .reshape(-1, n * batch.clean.shape[1] * corrupt.shape[-1])
            for x in QKV
        ]
        rows.append(mean[hooks.mlp_in(layer)].reshape(1, -1))
    rows.append(mean[hooks.final_resid].reshape(1, -1))
    delta = (corrupt - clean).double()
    if mask is not None:
        delta = delta * mask[None, :, :, None]
    scores = delta.reshape(shape.n_src, -1) @ torch.cat(rows).T
    return (scores.numpy() * shape.real_edge_mask()) / n


def close(a: np.ndarray, b: np.ndarray, tol: float) -> None:
    assert_close(a, b, rel=tol)


@pytest.mark.parametrize("steps", [1, 3])
def test_bounded_attribution_equals_the_dense_reference(bridge, steps):
    batch = equal_length_batch()
    result = attribute(bridge, [batch], METRIC, "eap-ig", steps=steps)
    close(result.scores, dense_reference(bridge, batch, steps), 1e-5)


def test_passes_and_micro_batches_under_a_memory_budget_give_the_same_scores(bridge, monkeypatch):
    batch = equal_length_batch()
    shape = graph_shape(bridge)
    stacked = working_set_bytes(bridge, shape, len(batch), batch.clean.shape[1], 3)
    assert plan_passes(bridge, shape, batch, 3, stacked) == (len(batch), 3)
    whole = attribute(bridge, [batch], METRIC, "eap-ig", steps=3, max_memory=stacked)
    one_step = working_set_bytes(bridge, shape, len(batch), batch.clean.shape[1], 1)
    assert plan_passes(bridge, shape, batch, 3, None) == (len(batch), 3), "a small pass stacks its steps"
    if next(bridge.parameters()).device.type == "cpu":
        for bound, copies in ((one_step, 1), (stacked - 1, 2)):
            monkeypatch.setattr(memory, "CPU_STACKING_BYTES", bound)
            assert plan_passes(bridge, shape, batch, 3, None) == (len(batch), copies), "a CPU stacks what fits"
    assert plan_passes(bridge, shape, batch, 3, one_step) == (len(batch), 1)
    assert plan_passes(bridge, shape, batch, 3, 1) == (1, 1)
    for budget in (one_step, 1):
        bounded = attribute(bridge, [batch], METRIC, "eap-ig", steps=3, max_memory=budget)
        close(bounded.scores, whole.scores, 1e-5)
        assert_close(bounded.metric_clean, whole.metric_clean, rel=1e-5)


def test_graph_size_matches_the_model(bridge):
    shape = graph_shape(bridge)
    model = bridge.original_model.config
    kv = getattr(model, "num_key_value_heads", None) or shape.n_heads
    assert (shape.n_heads, shape.kv_heads) == (
        (2, 2) if model.model_type == "gpt2" else (4, 2)
    ) and shape.kv_heads == kv
    assert shape.n_dst == shape.n_layers * (shape.n_heads + 2 * kv + 1) + 1
    assert int(shape.real_edge_mask().sum()) == shape.n_edges


def test_full_graph_is_faithful_and_empty_graph_is_not(bridge):
    shape = graph_shape(bridge)
    batches = [equal_length_batch(seed=s) for s in (1, 2)]
    full, empty = faithfulness_curve(bridge, batches, METRIC, [Circuit.full(shape), Circuit.empty(shape)])
    assert abs(full.gap) > 1e-3, "the corruption must move the metric for this test to mean anything"
    assert full.value == pytest.approx(1.0, abs=1e-4)
    assert empty.value == pytest.approx(0.0, abs=1e-4)


def test_eap_ranks_edges_like_exact_single_edge_patching(bridge):
    """A small perturbation (one token's embedding moved by 1%): EAP's first-order estimate of
    cutting each edge must rank the edges like exact patching (Spearman ≥ 0.9), K/V edges of
    the shared key/value heads included."""
    exact, estimate, edges, shape = single_edge_patching(bridge, VOCAB, FIRST, METRIC)
    rho = spearmanr(exact, estimate).statistic
    kv = [i for i, (_, t) in enumerate(edges) if shape.dst_qkv[t] in "kv" and shape.dst_qkv[t]]
    assert np.abs(exact[kv]).max() > 0, "K/V edges must carry an effect"
    assert rho >= 0.9, f"rank correlation {rho:.3f} over {len(edges)} edges"


@pytest.mark.parametrize(("method", "steps"), [("eap", 1), ("eap-ig", 3)])
def test_a_left_padded_batch_attributes_like_its_prompts_one_at_a_time(bridge, method, steps):
    clean, corrupt = pairs()
    padded = PromptBatch.from_pairs(clean, corrupt, torch.ones(len(clean)), pad_id=0)
    assert padded.attention_mask is not None and not padded.attention_mask.all()
    together = attribute(bridge, [padded], METRIC, method, steps=steps)
    alone = attribute(
        bridge,
        [PromptBatch.from_pairs([a], [b], torch.ones(1), pad_id=0) for a, b in zip(clean, corrupt, strict=True)],
        METRIC,
        method,
        steps=steps,
    )
    close(together.scores, alone.scores, 1e-5)
    assert_close(together.metric_clean, alone.metric_clean)
    assert_close(together.metric_corrupt, alone.metric_corrupt)
    close(together.scores, dense_reference(bridge, padded, steps), 1e-5)


def test_faithfulness_and_ablation_on_a_left_padded_batch_match_one_prompt_at_a_time(bridge):
    shape = graph_shape(bridge)
    clean, corrupt = pairs(seed=3)
    padded = [PromptBatch.from_pairs(clean, corrupt, torch.ones(len(clean)), pad_id=0)]
    alone = [PromptBatch.from_pairs([a], [b], torch.ones(1), pad_id=0) for a, b in zip(clean, corrupt, strict=True)]
    mask = shape.real_edge_mask().copy()
    mask[:, shape.mlp_dst(0)] = False
    circuits = [Circuit.full(shape), Circuit.empty(shape), Circuit(shape, mask)]
    for a, b in zip(
        faithfulness_curve(bridge, padded, METRIC, circuits),
        faithfulness_curve(bridge, alone, METRIC, circuits),
        strict=True,
    ):
        assert (a.metric_circuit, a.metric_clean, a.metric_corrupt) == pytest.approx(
            (b.metric_circuit, b.metric_clean, b.metric_corrupt), abs=1e-5
        )
    for mode in ("zero", "corrupt"):
        assert_close(
            ablated_metric(bridge, padded, METRIC, ["a1.h1", "m0"], mode),
            ablated_metric(bridge, alone, METRIC, ["a1.h1", "m0"], mode),
            rel=1e-5,
        )
    means = ablated_metric(bridge, padded, METRIC, ["m1"], "mean")
    assert means.shape == (len(clean),) and np.isfinite(means).all()


def _grouped(bridge):
    shape = graph_shape(bridge)
    if not shape.grouped:
        pytest.skip("key/value heads exist only with grouped-query attention")
    return shape


def test_corrupt_ablation_of_a_kv_head_equals_patching_every_edge_into_its_k_and_v_inputs(bridge):
    """Two code paths, one quantity: a key/value head's corrupted keys and values (ablation at
    ``hook_k``/``hook_v``) are what its k and v inputs give when every edge into them is patched."""
    shape = _grouped(bridge)
    clean, corrupt = pairs(seed=4)
    padded = [PromptBatch.from_pairs(clean, corrupt, torch.ones(len(clean)), pad_id=0)]
    clean_metric = ablated_metric(bridge, padded, METRIC, [], "corrupt")
    for layer, group in ((0, 1), (1, 0)):
        mask = shape.real_edge_mask().copy()
        mask[:, [shape.head_dst(layer, group, "k"), shape.head_dst(layer, group, "v")]] = False
        (patched,) = faithfulness_curve(bridge, padded, METRIC, [Circuit(shape, mask)])
        ablated = ablated_metric(bridge, padded, METRIC, [f"a{layer}.kv{group}"], "corrupt")
        assert np.abs(ablated - clean_metric).max() > 1e-4, "the corruption must move this kv head's output"
        assert ablated.mean() == pytest.approx(patched.metric_circuit, abs=1e-5)


def test_zero_ablating_a_kv_head_equals_zero_ablating_its_reader_heads(bridge):
    shape = _grouped(bridge)
    clean, corrupt = pairs(seed=5)
    padded = [PromptBatch.from_pairs(clean, corrupt, torch.ones(len(clean)), pad_id=0)]
    for layer in range(shape.n_layers):
        for group in range(shape.kv_heads):
            readers = [f"a{layer}.h{h}" for h in range(shape.n_heads) if shape.kv_head_of(h) == group]
            assert_close(
                ablated_metric(bridge, padded, METRIC, [f"a{layer}.kv{group}"], "zero"),
                ablated_metric(bridge, padded, METRIC, readers, "zero"),
                rel=1e-5,
            )


def test_ablating_nothing_is_the_clean_metric_and_kv_ablation_pads_like_one_prompt_at_a_time(bridge):
    shape = graph_shape(bridge)
    clean, corrupt = pairs(seed=6)
    padded = [PromptBatch.from_pairs(clean, corrupt, torch.ones(len(clean)), pad_id=0)]
    alone = [PromptBatch.from_pairs([a], [b], torch.ones(1), pad_id=0) for a, b in zip(clean, corrupt, strict=True)]
    with torch.no_grad():
        reference = METRIC(bridge(padded[0].clean, **run_kwargs(padded[0].attention_mask))).numpy()
    for mode in ("zero", "mean", "corrupt"):
        assert_close(ablated_metric(bridge, padded, METRIC, [], mode), reference, rel=1e-5)
    if not shape.grouped:
        with pytest.raises(AnalysisInputError, match="as many key/value heads"):
            ablated_metric(bridge, padded, METRIC, ["a0.kv0"], "zero")
        return
    modules = ["a0.kv1", "a1.h2"]
    for mode in ("zero", "mean", "corrupt"):
        assert_close(
            ablated_metric(bridge, padded, METRIC, modules, mode, reference=padded),
            ablated_metric(bridge, alone, METRIC, modules, mode, reference=padded),
            rel=1e-5,
        )
    with pytest.raises(AnalysisInputError, match="2 key/value heads"):
        ablated_metric(bridge, padded, METRIC, ["a0.kv2"], "zero")


def test_pairs_of_different_lengths_and_right_padding_are_refused():
    with pytest.raises(PromptLengthError, match="pair 1"):
        PromptBatch.from_pairs([[7, 8, 9], [7, 8]], [[7, 8, 9], [7, 8, 9]], torch.ones(2), pad_id=0)
    ids = torch.full((2, 3), 7)
    with pytest.raises(PromptLengthError, match="left-padded"):
        PromptBatch(ids, ids, torch.ones(2), torch.tensor([[1, 1, 0], [1, 1, 1]]))
    assert issubclass(PromptLengthError, ValueError)
