"""Hook functions that copy every source's residual write into one dense buffer.

The buffer is ``[n_src, batch, pos, d_model]`` in graph source order, so a difference of two
buffers times a ``[n_src, n_dst]`` weight matrix is a single matmul (see attribution and
faithfulness). Only the last ``rows`` prompts of a run are kept, which lets EAP-IG read the
clean activations from the α = 1 block of a batched interpolation run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from analysis.graph import GraphShape
from analysis.hooks import BridgeHooks, HookFn, bridge_hooks


def new_source_buffer(shape: GraphShape, ids: torch.Tensor, d_model: int, dtype: torch.dtype) -> torch.Tensor:
    batch, pos = ids.shape
    return torch.zeros(shape.n_src, batch, pos, d_model, dtype=dtype, device=ids.device)


def source_capture_hooks(hooks: BridgeHooks, shape: GraphShape, buffer: torch.Tensor) -> list[tuple[str, HookFn]]:
    """Forward hooks writing each source of the last ``buffer.shape[1]`` prompts into ``buffer``.

    ``input`` is token plus position embedding: both hooks add into row 0, so the buffer must
    start zeroed there.
    """
    rows = buffer.shape[1]

    def add_input(x: torch.Tensor, hook: Any) -> None:
        buffer[0] += x.detach()[-rows:] if x.shape[0] >= rows else x.detach()

    def heads(first: int) -> HookFn:
        def capture(x: torch.Tensor, hook: Any) -> None:
            buffer[first : first + shape.n_heads] = x.detach()[-rows:].permute(2, 0, 1, 3)

        return capture

    def mlp(index: int) -> HookFn:
        def capture(x: torch.Tensor, hook: Any) -> None:
            buffer[index] = x.detach()[-rows:]

        return capture

    fwd: list[tuple[str, HookFn]] = [(hooks.embed, add_input)]
    if hooks.has_pos_embed:
        fwd.append((hooks.pos_embed, add_input))
    for layer in range(shape.n_layers):
        fwd.append((hooks.result(layer), heads(shape.head_src(layer, 0))))
        fwd.append((hooks.mlp_out(layer), mlp(shape.mlp_src(layer))))
    return fwd


def run_sources(
    bridge: Any, hooks: BridgeHooks, shape: GraphShape, ids: torch.Tensor, extra_hooks: Sequence[tuple[str, HookFn]] = ()
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One no-grad forward: the source buffer, the token embeddings alone and the logits."""
    buffer = new_source_buffer(shape, ids, int(bridge.cfg.d_model), next(bridge.parameters()).dtype)
    embeds: list[torch.Tensor] = []
    fwd = [*source_capture_hooks(hooks, shape, buffer), (hooks.embed, lambda x, hook: embeds.append(x.detach())), *extra_hooks]
    with torch.no_grad(), bridge.hooks(fwd_hooks=fwd):
        logits = bridge(ids)
    return buffer, embeds[0], logits


def attention_pattern(bridge: Any, ids: torch.Tensor, layer: int, head: int) -> np.ndarray:
    """``[pos, pos]`` attention probabilities of one head on the first prompt of ``ids``
    (row: attending query position, column: attended key position)."""
    name = bridge_hooks(bridge).pattern(layer)
    with torch.no_grad():
        _, cache = bridge.run_with_cache(ids[:1], names_filter=lambda n: n == name)
    return cache[name][0, head].detach().cpu().numpy()
