"""Exact faithfulness of a circuit (method.md §5): patch every edge outside it, run, measure.

Patching an edge u → v means v reads u's *corrupted* output instead of its current one:
``x_v ← x_v + Σ_{u outside} (z_u(corrupt) − z_u(current))``. The corrupted outputs come from a
separate corrupted run; the current ones are read during the patched run itself, so a change
upstream propagates through the circuit's own edges. Then

    F(C) = (m(C) − m(corrupt)) / (m(clean) − m(corrupt))

with each m the mean over prompts: F = 1 for the full graph, F = 0 for the empty one.
Left-padded batches run with their attention mask and are never patched at padded positions.

A head's q, k and v inputs are patched through TransformerLens' split per-head inputs
(``use_split_qkv_input``): each head's patched input differs, and the pre-attention norm is
nonlinear, so each head needs its own normalised input. These runs are under ``no_grad``, so a
layer's per-head copies live only while that layer runs and nothing is kept for a backward: the
peak grows by one layer's ``[batch, pos, H + 2G, d_model]``, and each head projecting its own copy
costs what the shared projection does. (Attribution, whose backward would keep the copies,
forms none: :mod:`analysis.projections`.) Ablation (:mod:`analysis.ablation`) patches the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from analysis.activations import new_source_buffer, run_sources, source_capture_hooks
from analysis.circuit import Circuit
from analysis.errors import AnalysisInputError
from analysis.graph import QKV, GraphShape
from analysis.hooks import BridgeHooks, HookFn, edge_hooks, graph_shape, metric_input_hooks, run_kwargs
from analysis.prompts import Metric, PromptBatch


@dataclass(frozen=True)
class Faithfulness:
    n_edges: int
    metric_circuit: float
    metric_clean: float
    metric_corrupt: float

    @property
    def gap(self) -> float:
        return self.metric_clean - self.metric_corrupt

    @property
    def value(self) -> float:
        """F(C); NaN when clean and corrupted prompts give the same mean metric."""
        return (self.metric_circuit - self.metric_corrupt) / self.gap if self.gap != 0 else float("nan")


def _patch_hooks(
    hooks: BridgeHooks,
    shape: GraphShape,
    outside: torch.Tensor,
    corrupt: torch.Tensor,
    current: torch.Tensor,
    real: torch.Tensor | None,
) -> list[tuple[str, HookFn]]:
    """Destination hooks adding ``Σ_{u outside} (corrupt − current)[u]`` to each reader input.

    ``outside`` is ``[n_src, n_dst]`` float (1 = patch this edge). All q/k/v readers of one
    attention layer are computed in one matmul over the sources written before that layer.
    ``real`` ``[batch, pos]`` (1 = real token) zeroes the correction at padded positions.
    """
    flat_shape = corrupt.shape[1:]
    per_layer: dict[int, torch.Tensor] = {}

    def correction(first_dst: int, n_dst: int, n_sources: int) -> torch.Tensor:
        weights = outside[:n_sources, first_dst : first_dst + n_dst]
        diff = corrupt[:n_sources] - current[:n_sources]
        if real is not None:
            diff = diff * real[None, :, :, None]
        return (weights.T @ diff.reshape(n_sources, -1)).reshape(n_dst, *flat_shape)

    def head_input(layer: int, qkv: str) -> HookFn:
        first = shape.qkv_dst(layer, "q")
        offset = shape.qkv_dst(layer, qkv) - first

        def patch(x: torch.Tensor, hook: Any) -> torch.Tensor:
            if layer not in per_layer:
                per_layer[layer] = correction(first, shape.readers_per_layer - 1, shape.head_src(layer, 0))
            add = per_layer[layer][offset : offset + shape.n_inputs(qkv)]
            return x + add.permute(1, 2, 0, 3).to(x.dtype)

        return patch

    def single(dst: int, n_sources: int) -> HookFn:
        def patch(x: torch.Tensor, hook: Any) -> torch.Tensor:
            return x + correction(dst, 1, n_sources)[0].to(x.dtype)

        return patch

    fwd: list[tuple[str, HookFn]] = []
    for layer in range(shape.n_layers):
        for qkv in QKV:
            fwd.append((hooks.head_input(layer, qkv), head_input(layer, qkv)))
        fwd.append((hooks.mlp_in(layer), single(shape.mlp_dst(layer), shape.mlp_src(layer))))
    fwd.append((hooks.final_resid, single(shape.logits_dst, shape.n_src)))
    return fwd


def _patched_metric(
    bridge: Any,
    hooks: BridgeHooks,
    shape: GraphShape,
    batch: PromptBatch,
    metric: Metric,
    circuit: Circuit,
    corrupt: torch.Tensor,
) -> torch.Tensor:
    outside = torch.from_numpy(shape.real_edge_mask() & ~circuit.edges).to(corrupt.device, corrupt.dtype)
    current = new_source_buffer(shape, batch.clean, corrupt.shape[-1], corrupt.dtype)
    real = None if batch.attention_mask is None else batch.attention_mask.to(corrupt.dtype)
    fwd = [
        *source_capture_hooks(hooks, shape, current),
        *_patch_hooks(hooks, shape, outside, corrupt, current, real),
        *metric_input_hooks(hooks, metric),
    ]
    with torch.no_grad(), bridge.hooks(fwd_hooks=fwd):
        return metric(bridge(batch.clean, **run_kwargs(batch.attention_mask))) * batch.weight


@dataclass(frozen=True)
class BatchMetrics:
    """One batch's summed metrics: patched by each circuit, clean, corrupted, and its size.
    Faithfulness over several processes gathers these and combines them in batch order
    (:func:`combine`), as one process does."""

    circuit_sums: tuple[float, ...]
    clean_sum: float
    corrupt_sum: float
    n_prompts: int


def measure_batches(
    bridge: Any,
    batches: Iterable[PromptBatch],
    metric: Metric,
    circuits: Sequence[Circuit],
    progress: Callable[[int], None] | None = None,
) -> list[BatchMetrics]:
    """:class:`BatchMetrics` of every batch, in order (one corrupted run per batch, shared by
    the circuits); ``progress(n_prompts_done)`` after each batch."""
    shape = graph_shape(bridge)
    device = next(bridge.parameters()).device
    out: list[BatchMetrics] = []
    n = 0
    with edge_hooks(bridge) as hooks:
        for batch in batches:
            batch = batch.to(device)
            corrupt, _, corrupt_logits = run_sources(
                bridge, hooks, shape, batch.corrupt, metric_input_hooks(hooks, metric), batch.attention_mask
            )
            corrupt_sum = float((metric(corrupt_logits) * batch.weight).sum())
            with torch.no_grad(), bridge.hooks(fwd_hooks=metric_input_hooks(hooks, metric)):
                clean_sum = float(
                    (metric(bridge(batch.clean, **run_kwargs(batch.attention_mask))) * batch.weight).sum()
                )
            sums = tuple(
                float(_patched_metric(bridge, hooks, shape, batch, metric, circuit, corrupt).sum())
                for circuit in circuits
            )
            out.append(BatchMetrics(sums, clean_sum, corrupt_sum, len(batch)))
            n += len(batch)
            if progress is not None:
                progress(n)
    return out


def combine(circuits: Sequence[Circuit], parts: Sequence[BatchMetrics]) -> list[Faithfulness]:
    """Exact F of each circuit from its batches' metric sums, added up in batch order."""
    n = sum(part.n_prompts for part in parts)
    if n == 0:
        raise AnalysisInputError(
            "no prompts to measure faithfulness on: the set is empty", "pick a request or set with samples"
        )
    sums = np.zeros(len(circuits))
    clean_sum = corrupt_sum = 0.0
    for part in parts:
        sums += np.asarray(part.circuit_sums)
        clean_sum += part.clean_sum
        corrupt_sum += part.corrupt_sum
    return [Faithfulness(c.n_edges, s / n, clean_sum / n, corrupt_sum / n) for c, s in zip(circuits, sums, strict=True)]


def faithfulness_curve(
    bridge: Any,
    batches: Iterable[PromptBatch],
    metric: Metric,
    circuits: Sequence[Circuit],
    progress: Callable[[int], None] | None = None,
) -> list[Faithfulness]:
    """Exact F of each circuit over the same prompts (one corrupted run per batch, shared).
    (``analysis.distributed.faithfulness_sharded`` runs the same over several processes.)"""
    return combine(circuits, measure_batches(bridge, batches, metric, circuits, progress))


def curve_sizes(n_edges: int, points: int = 12) -> list[int]:
    """Circuit sizes for a faithfulness curve: 0, then roughly log-spaced up to every edge."""
    sizes = np.unique(np.round(np.geomspace(1, n_edges, points - 1)).astype(int))
    return [0, *sizes.tolist()]
