"""Hook functions that copy every source's residual write into one dense buffer.

The buffer is ``[n_src, batch, pos, d_model]`` in graph source order, so a difference of two
buffers times a ``[n_src, n_dst]`` weight matrix is a single matmul (see attribution and
faithfulness). Only the last ``rows`` prompts of a run are kept, which lets EAP-IG read the
clean activations from the α = 1 block of a batched interpolation run. With ``subtract`` the
hooks subtract the run's writes from the buffer instead of storing them, so a buffer holding
the corrupted sources becomes Δ = corrupt − clean without a second buffer.

A head's write is read from ``hook_result`` (the bridge's per-head result, ``reference``
engine). The ``projected`` engine passes :class:`~analysis.projections.HeadValues` instead: a
storing run keeps each layer's z (``hook_z``) and leaves the heads' rows of the buffer zero,
and the subtracting run writes the heads' Δ = (z_stored − z) · W_O into them, one product per
layer for both runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from analysis.graph import GraphShape
from analysis.hooks import BridgeHooks, HookFn, bridge_hooks, run_kwargs
from analysis.projections import HeadValues


def buffer_dtype(model_dtype: torch.dtype) -> torch.dtype:
    """Sources are kept in float32 for half-precision models (their differences are small)."""
    return torch.float32 if model_dtype in (torch.float16, torch.bfloat16) else model_dtype


def new_source_buffer(shape: GraphShape, ids: torch.Tensor, d_model: int, dtype: torch.dtype) -> torch.Tensor:
    batch, pos = ids.shape
    return torch.zeros(shape.n_src, batch, pos, d_model, dtype=dtype, device=ids.device)


def source_capture_hooks(
    hooks: BridgeHooks,
    shape: GraphShape,
    buffer: torch.Tensor,
    subtract: bool = False,
    head_values: HeadValues | None = None,
) -> list[tuple[str, HookFn]]:
    """Forward hooks writing (or with ``subtract``, subtracting) each source of the last
    ``buffer.shape[1]`` prompts into ``buffer``; heads through ``head_values`` when given
    (see the module docstring), else from ``hook_result``.

    ``input`` is token plus position embedding: both hooks add into row 0, so the buffer must
    start zeroed there (when storing).
    """
    rows = buffer.shape[1]

    def last(x: torch.Tensor) -> torch.Tensor:
        return x.detach()[-rows:]

    def add_input(x: torch.Tensor, hook: Any) -> None:
        buffer[0] += -last(x) if subtract else last(x)

    def write(index: slice | int, value: torch.Tensor) -> None:
        if subtract:
            buffer[index] -= value
        else:
            buffer[index] = value

    def heads(first: int) -> HookFn:
        def capture(x: torch.Tensor, hook: Any) -> None:
            write(slice(first, first + shape.n_heads), last(x).permute(2, 0, 1, 3))

        return capture

    def heads_from_z(layer: int, values: HeadValues) -> HookFn:
        first = shape.head_src(layer, 0)

        def capture(z: torch.Tensor, hook: Any) -> None:
            z = last(z)
            z = z.reshape(*z.shape[:2], shape.n_heads, -1)
            if subtract:
                buffer[first : first + shape.n_heads] = values.delta_writes(layer, z)
            else:
                values.store(layer, z)

        return capture

    def mlp(index: int) -> HookFn:
        def capture(x: torch.Tensor, hook: Any) -> None:
            write(index, last(x))

        return capture

    fwd: list[tuple[str, HookFn]] = [(hooks.embed, add_input)]
    if hooks.has_pos_embed:
        fwd.append((hooks.pos_embed, add_input))
    for layer in range(shape.n_layers):
        if head_values is None:
            fwd.append((hooks.result(layer), heads(shape.head_src(layer, 0))))
        else:
            fwd.append((hooks.z(layer), heads_from_z(layer, head_values)))
        fwd.append((hooks.mlp_out(layer), mlp(shape.mlp_src(layer))))
    return fwd


def run_sources(
    bridge: Any,
    hooks: BridgeHooks,
    shape: GraphShape,
    ids: torch.Tensor,
    extra_hooks: Sequence[tuple[str, HookFn]] = (),
    attention_mask: torch.Tensor | None = None,
    head_values: HeadValues | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One no-grad forward: the source buffer, the token embeddings alone and the logits.

    Padded positions (``attention_mask`` 0) are zero in the buffer, so they add nothing to any
    difference taken against it.
    """
    buffer = new_source_buffer(shape, ids, int(bridge.cfg.d_model), buffer_dtype(next(bridge.parameters()).dtype))
    embeds: list[torch.Tensor] = []
    fwd = [
        *source_capture_hooks(hooks, shape, buffer, head_values=head_values),
        (hooks.embed, lambda x, hook: embeds.append(x.detach())),
        *extra_hooks,
    ]
    with torch.no_grad(), bridge.hooks(fwd_hooks=fwd):
        logits = bridge(ids, **run_kwargs(attention_mask))
    if attention_mask is not None:
        buffer.masked_fill_(~attention_mask.bool()[None, :, :, None], 0)
    return buffer, embeds[0], logits


def attention_pattern(bridge: Any, ids: torch.Tensor, layer: int, head: int) -> np.ndarray:
    """``[pos, pos]`` attention probabilities of one head on the first prompt of ``ids``
    (row: attending query position, column: attended key position)."""
    name = bridge_hooks(bridge).pattern(layer)
    with torch.no_grad():
        _, cache = bridge.run_with_cache(ids[:1], names_filter=lambda n: n == name)
    return cache[name][0, head].detach().cpu().numpy()
