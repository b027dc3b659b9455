"""Edge attribution patching: EAP (Syed et al. 2023) and EAP-IG (Hanna et al. 2024).

Score of an edge u → v (method.md §4), summed over positions and d_model, averaged over prompts::

    s(u→v) = (z_u(corrupt) − z_u(clean)) · ∂m/∂x_v

Sign convention: Δ = corrupt − clean, so s approximates the change of the metric when that one
edge is patched to its corrupted value; an edge that carries the clean behaviour scores
negative when the metric is larger on clean prompts. (TransformerLens' own
``attribution_patch`` uses the opposite, denoising convention: only magnitudes compare.)

EAP-IG averages ∂m/∂x_v over ``steps`` points on the straight path from the corrupted to the
clean input embeddings, α = k/steps for k = 1 … steps (right Riemann sum). The α = 1 point is
the clean run itself, so EAP is exactly EAP-IG with one step, and both share this code:

- one no-grad forward on the corrupted prompts (their sources and token embeddings);
- one forward on ``steps`` stacked copies of the clean prompts whose token embeddings are
  replaced by the interpolations, reading the clean sources from the α = 1 copy;
- one backward (``torch.autograd.grad`` with respect to the destination inputs only; the
  weights are frozen so no parameter gradient is formed);
- one matmul ``Δ [n_src, N] @ G[n_dst, N]ᵀ`` with N = batch · pos · d_model.

A module's node score is the sum of its outgoing edge scores, which equals Δz_u · ∂m/∂z_u
(the residual stream is a plain sum, so ∂m/∂z_u is the sum of ∂m/∂x_v over its readers).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from analysis.activations import new_source_buffer, run_sources, source_capture_hooks
from analysis.errors import AnalysisInputError
from analysis.graph import QKV, GraphShape
from analysis.hooks import BridgeHooks, edge_hooks, graph_shape, metric_input_hooks
from analysis.prompts import Metric, PromptBatch

Method = Literal["eap", "eap-ig"]
METHODS: tuple[Method, ...] = ("eap", "eap-ig")


@dataclass
class Attribution:
    """Edge scores of one attribution run over a dataset.

    ``scores`` ``[n_src, n_dst]`` is the mean over prompts (zero off the real-edge mask);
    ``batch_scores`` ``[n_batches, n_src, n_dst]`` the mean within each batch, kept for robust
    (median) aggregation; ``metric_clean``/``metric_corrupt`` the per-prompt metric.
    """

    shape: GraphShape
    method: Method
    steps: int
    scores: np.ndarray
    batch_scores: np.ndarray
    metric_clean: np.ndarray
    metric_corrupt: np.ndarray
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def n_prompts(self) -> int:
        return len(self.metric_clean)

    @property
    def node_scores(self) -> np.ndarray:
        """``[n_src]``: each module's summed outgoing edge scores (its node attribution)."""
        return self.scores.sum(axis=1)

    @property
    def total_effect(self) -> float:
        """Mean m(corrupt) − m(clean): what the input node's scores add up to for exact IG."""
        return float(np.mean(self.metric_corrupt - self.metric_clean))

    def top_edges(self, n: int = 10) -> list[tuple[str, float]]:
        order = np.argsort(-np.abs(self.scores), axis=None)[:n]
        return [(self.shape.edge_name(*np.unravel_index(i, self.scores.shape)), float(self.scores.flat[i])) for i in order]


def _validate(method: str, steps: int) -> int:
    if method not in METHODS:
        raise AnalysisInputError(f"unknown attribution method {method!r}", f"use one of {', '.join(METHODS)}")
    if method == "eap":
        return 1
    if steps < 1:
        raise AnalysisInputError(f"EAP-IG needs at least one step, got steps={steps}", "use 1 step or more")
    return steps


def _destination_grads(
    bridge: Any, hooks: BridgeHooks, shape: GraphShape, batch: PromptBatch, metric: Metric, corrupt_embed: torch.Tensor, steps: int, source_buffer: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of the metric at every destination, averaged over the IG steps, as
    ``[n_dst, batch·pos·d_model]``, and the clean metric per prompt."""
    n = len(batch)
    alphas = torch.arange(1, steps + 1, dtype=corrupt_embed.dtype, device=corrupt_embed.device) / steps
    readers: dict[str, torch.Tensor] = {}

    def interpolate(x: torch.Tensor, hook: Any) -> torch.Tensor:
        clean = x[-n:]
        if steps == 1:
            return clean.detach().requires_grad_(True)
        path = corrupt_embed + alphas[:-1, None, None, None] * (clean - corrupt_embed)  # [steps-1, n, pos, d]
        return torch.cat([path.reshape(-1, *clean.shape[1:]), clean]).detach().requires_grad_(True)

    def keep(name: str):
        # The bridge hands the residual stream itself to ``hook_mlp_in`` (and the final
        # residual hook); returning a copy makes the copy the reader's own input, so its
        # gradient is the reader's alone and not the rest of the residual stream's too.
        def hook(x: torch.Tensor, hook: Any) -> torch.Tensor:
            readers[name] = x.clone()
            return readers[name]

        return hook

    reader_names = [hooks.head_input(layer, x) for layer in range(shape.n_layers) for x in QKV]
    reader_names += [hooks.mlp_in(layer) for layer in range(shape.n_layers)] + [hooks.final_resid]
    fwd = [(hooks.embed, interpolate), *source_capture_hooks(hooks, shape, source_buffer), *[(name, keep(name)) for name in reader_names], *metric_input_hooks(hooks, metric)]
    ids = batch.clean.repeat(steps, 1)
    weight = batch.weight.repeat(steps)
    with torch.enable_grad(), bridge.hooks(fwd_hooks=fwd):
        values = metric(bridge(ids)) * weight
        grads = torch.autograd.grad(values.sum(), [readers[name] for name in reader_names])
    by_name = {name: g.reshape(steps, n, *g.shape[1:]).mean(0) for name, g in zip(reader_names, grads, strict=True)}

    rows: list[torch.Tensor] = []
    for layer in range(shape.n_layers):
        for x in QKV:
            rows.append(by_name[hooks.head_input(layer, x)].permute(2, 0, 1, 3).reshape(shape.n_heads, -1))
        rows.append(by_name[hooks.mlp_in(layer)].reshape(1, -1))
    rows.append(by_name[hooks.final_resid].reshape(1, -1))
    return torch.cat(rows), values.detach()[-n:]


def attribute_batch(bridge: Any, hooks: BridgeHooks, batch: PromptBatch, metric: Metric, steps: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Summed edge scores ``[n_src, n_dst]`` of one batch, with the clean and corrupted metric."""
    shape = graph_shape(bridge)
    corrupt_sources, corrupt_embed, corrupt_logits = run_sources(bridge, hooks, shape, batch.corrupt, metric_input_hooks(hooks, metric))
    clean_sources = new_source_buffer(shape, batch.clean, int(bridge.cfg.d_model), corrupt_sources.dtype)
    grads, metric_clean = _destination_grads(bridge, hooks, shape, batch, metric, corrupt_embed, steps, clean_sources)
    delta = (corrupt_sources - clean_sources).reshape(shape.n_src, -1)
    scores = delta @ grads.T
    return scores, metric_clean, metric(corrupt_logits) * batch.weight


def attribute(
    bridge: Any,
    batches: Iterable[PromptBatch],
    metric: Metric,
    method: Method = "eap",
    steps: int = 5,
    settings: dict[str, Any] | None = None,
    progress: Any = None,
) -> Attribution:
    """EAP or EAP-IG edge scores over a stream of batches, averaged over prompts.

    ``progress`` is called as ``progress(n_prompts_done)`` after each batch. Runs on whatever
    device the bridge is on; batches are moved there.
    """
    steps = _validate(method, steps)
    shape = graph_shape(bridge)
    mask = torch.from_numpy(shape.real_edge_mask())
    device = next(bridge.parameters()).device
    total = torch.zeros(shape.n_src, shape.n_dst, dtype=torch.float64)
    per_batch: list[np.ndarray] = []
    clean_values: list[np.ndarray] = []
    corrupt_values: list[np.ndarray] = []
    with edge_hooks(bridge) as hooks:
        for batch in batches:
            scores, m_clean, m_corrupt = attribute_batch(bridge, hooks, batch.to(device), metric, steps)
            scores = scores.double().cpu() * mask
            total += scores
            per_batch.append((scores / len(batch)).numpy())
            clean_values.append(m_clean.double().cpu().numpy())
            corrupt_values.append(m_corrupt.double().cpu().numpy())
            if progress is not None:
                progress(sum(len(v) for v in clean_values))
    if not per_batch:
        raise AnalysisInputError("no prompts to attribute: the set is empty", "pick a request or set with samples")
    n = sum(len(v) for v in clean_values)
    return Attribution(
        shape=shape,
        method=method,
        steps=steps,
        scores=(total / n).numpy(),
        batch_scores=np.stack(per_batch),
        metric_clean=np.concatenate(clean_values),
        metric_corrupt=np.concatenate(corrupt_values),
        settings=dict(settings or {}),
    )
