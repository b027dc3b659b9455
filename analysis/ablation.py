"""Module ablation: run the model with chosen heads and MLPs knocked out, read the metric.

A head is ablated at ``blocks.{l}.attn.hook_z`` (its value-weighted sum, before W_O), an MLP
at ``blocks.{l}.hook_mlp_out``. With grouped-query attention a key/value head ``a{l}.kv{g}``
is ablated at ``blocks.{l}.attn.hook_k`` and ``hook_v`` (slice g of ``[batch, pos, kv_head,
d_head]``: its keys and values after the projection and its bias, before any rotary
embedding), so every query head reading it sees the ablated keys and values. Modes:

- ``zero``: the module writes nothing (a head still adds its share of the W_O bias; a zeroed
  key/value head gives its reader heads zero values, so they write nothing either);
- ``mean``: it writes its per-position mean over the batches given as ``reference``
  (default: the batches themselves);
- ``corrupt``: it writes what it writes on the batch's corrupted prompts (for a key/value head:
  the keys and values it computes on them, which is exactly what patching every edge into its
  k and v inputs with the corrupted run gives).

Left-padded batches run with their attention mask. Positions are counted from the end of the
prompt (the answer position is the last one), so a mean is taken over the real tokens at each
distance from the end, never over padding; a prompt longer than every reference prompt has no
mean for its first positions and is refused.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch

from analysis.errors import AnalysisInputError
from analysis.graph import GraphShape
from analysis.hooks import HookFn, bridge_hooks, graph_shape, metric_input_hooks, run_kwargs
from analysis.prompts import Metric, PromptBatch

AblationMode = Literal["zero", "mean", "corrupt"]
MODES: tuple[AblationMode, ...] = ("zero", "mean", "corrupt")
_MODULE = re.compile(r"^(?:a(?P<layer>\d+)\.(?P<kind>h|kv)(?P<head>\d+)|m(?P<mlp>\d+))$")


def _targets(modules: Sequence[str], shape: GraphShape) -> dict[str, list[int | None]]:
    """``{hook name: [head index, ...]}``; ``None`` stands for a whole MLP output."""
    targets: dict[str, list[int | None]] = {}
    for module in modules:
        match = _MODULE.match(module)
        if match is None:
            raise AnalysisInputError(
                f"cannot ablate {module!r}", "name a head (a0.h1), a key/value head (a0.kv1) or an MLP (m2)"
            )
        layer = int(match["mlp"] if match["mlp"] is not None else match["layer"])
        if layer >= shape.n_layers:
            raise AnalysisInputError(f"cannot ablate {module!r}: the model has {shape.n_layers} layers", "name a layer")
        if match["mlp"] is not None:
            targets.setdefault(f"blocks.{layer}.hook_mlp_out", []).append(None)
            continue
        head = int(match["head"])
        if match["kind"] == "kv" and not shape.grouped:
            raise AnalysisInputError(
                f"cannot ablate {module!r}: the model has as many key/value heads as query heads",
                f"ablate the head a{layer}.h{head}, which owns its own keys and values",
            )
        count, what = (shape.kv_heads, "key/value heads") if match["kind"] == "kv" else (shape.n_heads, "heads")
        if head >= count:
            raise AnalysisInputError(f"cannot ablate {module!r}: layer {layer} has {count} {what}", "name one of them")
        hooks = ("hook_k", "hook_v") if match["kind"] == "kv" else ("hook_z",)
        for hook in hooks:
            targets.setdefault(f"blocks.{layer}.attn.{hook}", []).append(head)
    return targets


def _capture(bridge: Any, batch: PromptBatch, names: list[str], corrupt: bool = False) -> dict[str, torch.Tensor]:
    store: dict[str, torch.Tensor] = {}

    def keep(name: str) -> HookFn:
        def hook(x: torch.Tensor, hook: Any) -> None:
            store[name] = x.detach()

        return hook

    with torch.no_grad(), bridge.hooks(fwd_hooks=[(n, keep(n)) for n in names]):
        bridge(batch.corrupt if corrupt else batch.clean, **run_kwargs(batch.attention_mask))
    return store


def _right_aligned_means(
    bridge: Any, reference: Sequence[PromptBatch], names: list[str], device: torch.device
) -> dict[str, torch.Tensor]:
    """Per-position means ``[1, pos, ...]`` over the real tokens of ``reference``, positions
    counted from the end (the longest reference prompt sets ``pos``)."""
    sums: dict[str, torch.Tensor] = {}
    counts = torch.zeros(0, device=device)
    for batch in reference:
        batch = batch.to(device)
        real = (
            torch.ones_like(batch.clean, dtype=torch.float32)
            if batch.attention_mask is None
            else batch.attention_mask.float()
        )
        width = real.shape[1]
        if width > counts.shape[0]:
            counts = torch.cat([torch.zeros(width - counts.shape[0], device=device), counts])
            sums = {
                name: torch.cat([total.new_zeros(1, width - total.shape[1], *total.shape[2:]), total], dim=1)
                for name, total in sums.items()
            }
        counts[-width:] += real.sum(0)
        for name, value in _capture(bridge, batch, names).items():
            weighted = (value * real.view(*real.shape, *([1] * (value.ndim - 2))).to(value.dtype)).sum(0, keepdim=True)
            if name not in sums:
                sums[name] = weighted.new_zeros(1, counts.shape[0], *weighted.shape[2:])
            sums[name][:, -width:] += weighted
    return {
        name: total / counts.clamp(min=1).view(1, -1, *([1] * (total.ndim - 2))).to(total.dtype)
        for name, total in sums.items()
    }


def _replace(targets: dict[str, list[int | None]], values: dict[str, torch.Tensor] | None) -> list[tuple[str, HookFn]]:
    def hook_for(name: str) -> HookFn:
        def replace(x: torch.Tensor, hook: Any) -> torch.Tensor:
            out = x.clone()
            source = torch.zeros_like(x) if values is None else values[name].expand_as(x)
            for head in targets[name]:
                if head is None:
                    out = source.clone()
                else:
                    out[:, :, head] = source[:, :, head]
            return out

        return replace

    return [(name, hook_for(name)) for name in targets]


def ablated_metric(
    bridge: Any,
    batches: Sequence[PromptBatch],
    metric: Metric,
    modules: Sequence[str],
    mode: AblationMode = "zero",
    reference: Sequence[PromptBatch] | None = None,
) -> np.ndarray:
    """Per-prompt metric (times each prompt's weight) with ``modules`` ablated; with no
    modules, the plain clean metric."""
    if mode not in MODES:
        raise AnalysisInputError(f"unknown ablation mode {mode!r}", f"use one of {', '.join(MODES)}")
    hooks = bridge_hooks(bridge)
    targets = _targets(modules, graph_shape(bridge))
    device = next(bridge.parameters()).device
    means: dict[str, torch.Tensor] | None = None
    if targets and mode == "mean":
        means = _right_aligned_means(bridge, reference or batches, list(targets), device)
    values: list[np.ndarray] = []
    for batch in batches:
        batch = batch.to(device)
        replacement = None
        if mode == "mean" and means is not None:
            width = batch.clean.shape[1]
            if any(mean.shape[1] < width for mean in means.values()):
                raise ValueError(
                    f"a prompt of {width} positions is longer than every reference prompt — mean ablation "
                    "has no mean for its first positions"
                )
            replacement = {name: mean[:, -width:] for name, mean in means.items()}
        elif mode == "corrupt" and targets:
            replacement = _capture(bridge, batch, list(targets), corrupt=True)
        fwd = [*_replace(targets, replacement), *metric_input_hooks(hooks, metric)]
        with torch.no_grad(), bridge.hooks(fwd_hooks=fwd):
            values.append(
                (metric(bridge(batch.clean, **run_kwargs(batch.attention_mask))) * batch.weight).cpu().numpy()
            )
    return np.concatenate(values) if values else np.zeros(0)
