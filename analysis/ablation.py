"""Module ablation: run the model with chosen heads and MLPs knocked out, read the metric.

A head is ablated at ``blocks.{l}.attn.hook_z`` (its value-weighted sum, before W_O), an MLP
at ``blocks.{l}.hook_mlp_out``. Modes:

- ``zero``: the module writes nothing (a head still adds its share of the W_O bias);
- ``mean``: it writes its per-position mean over the batches given as ``reference``
  (default: the batches themselves);
- ``corrupt``: it writes what it writes on the batch's corrupted prompts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch

from analysis.errors import AnalysisInputError
from analysis.hooks import HookFn, bridge_hooks, metric_input_hooks
from analysis.prompts import Metric, PromptBatch

AblationMode = Literal["zero", "mean", "corrupt"]
MODES: tuple[AblationMode, ...] = ("zero", "mean", "corrupt")
_MODULE = re.compile(r"^(?:a(?P<layer>\d+)\.h(?P<head>\d+)|m(?P<mlp>\d+))$")


def _targets(modules: Sequence[str]) -> dict[str, list[int | None]]:
    """``{hook name: [head index, ...]}``; ``None`` stands for a whole MLP output."""
    targets: dict[str, list[int | None]] = {}
    for module in modules:
        match = _MODULE.match(module)
        if match is None:
            raise AnalysisInputError(f"cannot ablate {module!r}", "name a head (a0.h1) or an MLP (m2)")
        if match["mlp"] is not None:
            targets.setdefault(f"blocks.{match['mlp']}.hook_mlp_out", []).append(None)
        else:
            targets.setdefault(f"blocks.{match['layer']}.attn.hook_z", []).append(int(match["head"]))
    return targets


def _capture(bridge: Any, ids: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
    store: dict[str, torch.Tensor] = {}

    def keep(name: str) -> HookFn:
        def hook(x: torch.Tensor, hook: Any) -> None:
            store[name] = x.detach()

        return hook

    with torch.no_grad(), bridge.hooks(fwd_hooks=[(n, keep(n)) for n in names]):
        bridge(ids)
    return store


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
    bridge: Any, batches: Sequence[PromptBatch], metric: Metric, modules: Sequence[str], mode: AblationMode = "zero", reference: Sequence[PromptBatch] | None = None
) -> np.ndarray:
    """Per-prompt metric (times each prompt's weight) with ``modules`` ablated; with no
    modules, the plain clean metric."""
    if mode not in MODES:
        raise AnalysisInputError(f"unknown ablation mode {mode!r}", f"use one of {', '.join(MODES)}")
    hooks = bridge_hooks(bridge)
    targets = _targets(modules)
    device = next(bridge.parameters()).device
    means: dict[str, torch.Tensor] | None = None
    if targets and mode == "mean":
        sums: dict[str, torch.Tensor] = {}
        count = 0
        for batch in reference or batches:
            captured = _capture(bridge, batch.clean.to(device), list(targets))
            for name, value in captured.items():
                sums[name] = sums.get(name, 0) + value.sum(0, keepdim=True)
            count += len(batch)
        means = {name: total / count for name, total in sums.items()}
    values: list[np.ndarray] = []
    for batch in batches:
        batch = batch.to(device)
        replacement = means if mode == "mean" else (_capture(bridge, batch.corrupt, list(targets)) if mode == "corrupt" and targets else None)
        fwd = [*_replace(targets, replacement), *metric_input_hooks(hooks, metric)]
        with torch.no_grad(), bridge.hooks(fwd_hooks=fwd):
            values.append((metric(bridge(batch.clean)) * batch.weight).cpu().numpy())
    return np.concatenate(values) if values else np.zeros(0)
