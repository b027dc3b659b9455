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

- one no-grad forward on the corrupted prompts, writing their sources into a buffer
  ``[n_src, batch, pos, d_model]``;
- one forward on ``steps`` stacked copies of the clean prompts whose token embeddings are
  replaced by the interpolations; hooks subtract the clean sources (the α = 1 copy) from the
  buffer in place, which leaves Δ;
- one backward (weights frozen, so no parameter gradient is formed). A gradient hook on each
  reader's input turns its gradient into that reader's edge scores the moment it arrives —
  ``Δ[upstream sources] @ ∂m/∂x_v`` — and lets it go, so memory holds Δ and the
  activations the backward needs, never all readers' gradients at once.

Two engines give the same scores. The default ``projected`` engine runs the plain model and
forms each head's q/k/v reader gradient from its projection's output gradient
(:mod:`analysis.projections`), so nothing per head is kept for the backward; ``reference``
reads them from TransformerLens' split per-head q/k/v inputs (``use_split_qkv_input``), which
copy the residual stream once per head and keep the copies for the backward.

Memory grows with the batch and the IG steps run at once (:mod:`analysis.memory` predicts it);
``max_memory`` runs the steps in several passes (the clean one first, since it completes Δ) and, if still needed, splits each
batch into micro-batches, so the estimated working set fits (:func:`plan_passes`). Scores are
sums over steps and prompts, so this changes nothing but rounding.

Left-padded batches (``PromptBatch.attention_mask``) run with the mask; Δ and the gradients
are zero at padded positions, so padding contributes nothing and a padded batch scores like
its prompts run one at a time.

A module's node score is the sum of its outgoing edge scores, which equals Δz_u · ∂m/∂z_u
(the residual stream is a plain sum, so ∂m/∂z_u is the sum of ∂m/∂x_v over its readers).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from analysis.activations import run_sources, source_capture_hooks
from analysis.errors import AnalysisInputError
from analysis.graph import QKV, GraphShape
from analysis.hooks import (
    BridgeHooks,
    Engine,
    HookFn,
    checked_engine,
    edge_hooks,
    graph_shape,
    metric_input_hooks,
    run_kwargs,
)
from analysis.memory import plan_passes
from analysis.projections import AttentionWeights, HeadValues, attention_weights, projected_reader_hooks
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
        return [
            (self.shape.edge_name(*np.unravel_index(i, self.scores.shape)), float(self.scores.flat[i])) for i in order
        ]


def checked_steps(method: str, steps: int) -> int:
    """The IG steps ``method`` runs (EAP: one), or an input error for an unknown method or too few steps."""
    if method not in METHODS:
        raise AnalysisInputError(f"unknown attribution method {method!r}", f"use one of {', '.join(METHODS)}")
    if method == "eap":
        return 1
    if steps < 1:
        raise AnalysisInputError(f"EAP-IG needs at least one step, got steps={steps}", "use 1 step or more")
    return steps


def _score_hooks(
    shape: GraphShape,
    hooks: BridgeHooks,
    delta: torch.Tensor,
    scores: torch.Tensor,
    steps: int,
    pad: torch.Tensor | None,
    attention: list[AttentionWeights] | None,
) -> list[tuple[str, HookFn]]:
    """Forward hooks on every reader that attach a gradient hook adding the reader's edge
    scores ``Δ[:n_sources] · ∂m/∂x`` into ``scores`` (summed over the IG steps). The q/k/v
    readers are the split inputs (``attention`` None, reference engine) or come from the
    projections' output gradients (:mod:`analysis.projections`)."""
    n = delta.shape[1]

    def add_scores(first_dst: int, n_sources: int, rows: torch.Tensor) -> None:
        """``rows`` ``[n_readers, n·pos·d_model]``: the readers' gradients, summed over the steps."""
        part = delta[:n_sources].reshape(n_sources, -1) @ rows.to(delta.dtype).T
        scores[:n_sources, first_dst : first_dst + rows.shape[0]] += part.to(scores.dtype)

    def on_gradient(first_dst: int, n_sources: int):
        def accumulate(grad: torch.Tensor) -> None:
            g = grad.reshape(steps, n, *grad.shape[1:]).sum(0)  # [n, pos, (readers,) d_model]
            if pad is not None:
                g = g.masked_fill(pad.view(*pad.shape, *([1] * (g.ndim - 2))), 0)
            rows = g.permute(2, 0, 1, 3).reshape(g.shape[2], -1) if g.ndim == 4 else g.reshape(1, -1)
            add_scores(first_dst, n_sources, rows)

        return accumulate

    def watch(on_grad: Any) -> HookFn:
        # A view is a node of its own: its gradient is this reader's alone, even where the
        # bridge hands the residual stream itself to the hook (``hook_mlp_in``, the final
        # residual), and it costs no memory.
        def hook(x: torch.Tensor, hook: Any) -> torch.Tensor:
            y = x.view_as(x)
            y.register_hook(on_grad)
            return y

        return hook

    fwd: list[tuple[str, HookFn]] = []
    if attention is not None:
        fwd += projected_reader_hooks(shape, hooks, attention, steps, pad, add_scores, watch)
    for layer in range(shape.n_layers):
        if attention is None:
            for x in QKV:
                fwd.append(
                    (hooks.head_input(layer, x), watch(on_gradient(shape.qkv_dst(layer, x), shape.head_src(layer, 0))))
                )
        fwd.append((hooks.mlp_in(layer), watch(on_gradient(shape.mlp_dst(layer), shape.mlp_src(layer)))))
    fwd.append((hooks.final_resid, watch(on_gradient(shape.logits_dst, shape.n_src))))
    return fwd


def _backward_pass(
    bridge: Any,
    hooks: BridgeHooks,
    shape: GraphShape,
    batch: PromptBatch,
    metric: Metric,
    alphas: torch.Tensor,
    corrupt_embed: torch.Tensor,
    delta: torch.Tensor,
    scores: torch.Tensor,
    head_values: HeadValues | None,
) -> torch.Tensor | None:
    """One forward and backward on ``len(alphas)`` interpolated copies of the clean prompts,
    adding their edge scores into ``scores``. The pass whose last α is 1 is the clean run: it
    subtracts the clean sources from ``delta`` (so it must come first) and returns the clean
    metric per prompt; other passes return None."""
    n, copies, mask = len(batch), len(alphas), batch.attention_mask
    pad = None if mask is None else ~mask.bool()
    clean_pass = bool(alphas[-1] == 1)
    leaf: list[torch.Tensor] = []

    def interpolate(x: torch.Tensor, hook: Any) -> torch.Tensor:
        clean = x[-n:]
        along = alphas[:-1] if clean_pass else alphas
        path = corrupt_embed + along[:, None, None, None] * (clean - corrupt_embed)  # [copies(-1), n, pos, d]
        leaf.append(
            torch.cat([path.reshape(-1, *clean.shape[1:]), *([clean] if clean_pass else [])])
            .detach()
            .requires_grad_(True)
        )
        return leaf[0]

    capture = source_capture_hooks(hooks, shape, delta, subtract=True, head_values=head_values) if clean_pass else []
    attention = None if head_values is None else head_values.attention
    fwd = [
        (hooks.embed, interpolate),
        *capture,
        *_score_hooks(shape, hooks, delta, scores, copies, pad, attention),
        *metric_input_hooks(hooks, metric),
    ]
    with torch.enable_grad(), bridge.hooks(fwd_hooks=fwd):
        values = metric(
            bridge(batch.clean.repeat(copies, 1), **run_kwargs(None if mask is None else mask.repeat(copies, 1)))
        ) * batch.weight.repeat(copies)
        if clean_pass and pad is not None:
            delta.masked_fill_(pad[None, :, :, None], 0)
        torch.autograd.grad(values.sum(), leaf)
    return values.detach()[-n:] if clean_pass else None


def attribute_batch(
    bridge: Any,
    hooks: BridgeHooks,
    batch: PromptBatch,
    metric: Metric,
    steps: int,
    steps_per_pass: int | None = None,
    attention: list[AttentionWeights] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Summed edge scores ``[n_src, n_dst]`` (float64) of one batch, with the clean and
    corrupted metric per prompt. The IG steps run ``steps_per_pass`` at a time (default: all
    in one pass), the clean one (α = 1) first. ``attention``: every layer's weights for the
    projected engine (the bridge inside ``edge_hooks(bridge, "projected")``); None for the
    reference engine."""
    shape = graph_shape(bridge)
    head_values = None if attention is None else HeadValues(attention)
    delta, corrupt_embed, corrupt_logits = run_sources(
        bridge, hooks, shape, batch.corrupt, metric_input_hooks(hooks, metric), batch.attention_mask, head_values
    )
    scores = torch.zeros(shape.n_src, shape.n_dst, dtype=torch.float64, device=delta.device)
    alphas = torch.arange(1, steps + 1, dtype=corrupt_embed.dtype, device=corrupt_embed.device) / steps
    chunk = steps_per_pass or steps
    ends = range(steps, 0, -chunk)
    metric_clean = None
    for end in ends:
        values = _backward_pass(
            bridge,
            hooks,
            shape,
            batch,
            metric,
            alphas[max(0, end - chunk) : end],
            corrupt_embed,
            delta,
            scores,
            head_values,
        )
        metric_clean = values if values is not None else metric_clean
    assert metric_clean is not None  # the first pass ends at α = 1
    return scores / steps, metric_clean, metric(corrupt_logits) * batch.weight


@dataclass
class BatchScores:
    """One batch's contribution: its edge scores summed over its prompts (float64) and the
    clean and corrupted metric per prompt. Attribution over several processes gathers these
    and assembles them in batch order (:func:`assemble`), as one process does."""

    sums: np.ndarray
    metric_clean: np.ndarray
    metric_corrupt: np.ndarray

    @property
    def n_prompts(self) -> int:
        return len(self.metric_clean)


def score_batches(
    bridge: Any,
    batches: Iterable[PromptBatch],
    metric: Metric,
    steps: int,
    progress: Any = None,
    max_memory: int | None = None,
    engine: Engine = "projected",
) -> list[BatchScores]:
    """:class:`BatchScores` of every batch, in order (``steps`` already validated). The steps
    and rows of each batch run in the passes :func:`plan_passes` fits into ``max_memory``;
    ``progress(n_prompts_done)`` is called after each batch. ``engine``: ``projected`` (per-head
    reader gradients from the plain model) or ``reference`` (TransformerLens' split q/k/v
    inputs); the scores are the same."""
    shape = graph_shape(bridge)
    device = next(bridge.parameters()).device
    out: list[BatchScores] = []
    done = 0
    with edge_hooks(bridge, checked_engine(engine)) as hooks:
        attention = (
            [attention_weights(bridge, layer) for layer in range(shape.n_layers)] if engine == "projected" else None
        )
        for batch in batches:
            batch = batch.to(device)
            rows, steps_per_pass = plan_passes(bridge, shape, batch, steps, max_memory, engine)
            scores = torch.zeros(shape.n_src, shape.n_dst, dtype=torch.float64)
            clean, corrupt = [], []
            for start in range(0, len(batch), rows):
                part, m_clean, m_corrupt = attribute_batch(
                    bridge, hooks, batch[start : start + rows], metric, steps, steps_per_pass, attention
                )
                scores += part.cpu()
                clean.append(m_clean.double().cpu().numpy())
                corrupt.append(m_corrupt.double().cpu().numpy())
            out.append(BatchScores(scores.numpy(), np.concatenate(clean), np.concatenate(corrupt)))
            done += len(batch)
            if progress is not None:
                progress(done)
    return out


def assemble(
    shape: GraphShape, method: Method, steps: int, parts: list[BatchScores], settings: dict[str, Any] | None = None
) -> Attribution:
    """The :class:`Attribution` of batches' scores in batch order: the float64 sum over batches
    divided by the prompts, and each batch's own mean."""
    if not parts:
        raise AnalysisInputError("no prompts to attribute: the set is empty", "pick a request or set with samples")
    total = np.zeros((shape.n_src, shape.n_dst), dtype=np.float64)
    for part in parts:
        total += part.sums
    n = sum(part.n_prompts for part in parts)
    return Attribution(
        shape=shape,
        method=method,
        steps=steps,
        scores=total / n,
        batch_scores=np.stack([part.sums / part.n_prompts for part in parts]),
        metric_clean=np.concatenate([part.metric_clean for part in parts]),
        metric_corrupt=np.concatenate([part.metric_corrupt for part in parts]),
        settings=dict(settings or {}),
    )


def attribute(
    bridge: Any,
    batches: Iterable[PromptBatch],
    metric: Metric,
    method: Method = "eap",
    steps: int = 5,
    settings: dict[str, Any] | None = None,
    progress: Any = None,
    max_memory: int | None = None,
    engine: Engine = "projected",
) -> Attribution:
    """EAP or EAP-IG edge scores over a stream of batches, averaged over prompts.

    ``progress`` is called as ``progress(n_prompts_done)`` after each batch. Runs on whatever
    device the bridge is on; batches are moved there. ``max_memory`` (bytes) bounds each
    pass's estimated working set (:func:`plan_passes`) by running the IG steps in several
    passes and splitting batches into micro-batches; the per-batch scores are those of the
    whole batch either way. (``analysis.distributed.attribute_sharded`` runs the same over
    several processes.)
    """
    steps = checked_steps(method, steps)
    parts = score_batches(bridge, batches, metric, steps, progress, max_memory, engine)
    return assemble(graph_shape(bridge), method, steps, parts, settings)
