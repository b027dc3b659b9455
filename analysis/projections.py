"""Per-head reader gradients and head writes from the un-split model (the ``projected`` engine).

A head's q input is, in the graph, its own copy of the residual stream x: ``q_h = W_Q[h] ·
norm(x_h) + b``. TransformerLens can materialise those copies (``use_split_qkv_input``:
``[batch, pos, head, d_model]`` for q, k and v, all kept for the backward), but the gradient
EAP needs at head h's q input follows from quantities the plain model computes anyway:

    ∂m/∂x_h = Jᵀ · W_Q[h]ᵀ · ∂m/∂q_h

where ``∂m/∂q_h`` is the gradient at the projection's output (``attn.q.hook_out``,
``[batch, pos, head, d_head]``) and J the Jacobian of the block's pre-attention norm at the
shared input x. For a norm with gain w, normalised input x̂ = (x − μ)/s (LayerNorm) or x/s
(RMSNorm, μ = 0) and s = √(mean((x − μ)²) + ε)::

    Jᵀu = (ũ − mean(ũ) − x̂ · mean(x̂ ⊙ ũ)) / s,   ũ = w ⊙ u      (RMSNorm: no mean(ũ) term)

k and v are the same with W_K, W_V and one gradient per key/value head (grouped-query
attention). Nothing per head is kept for the backward: the forward keeps x and s per layer,
and each reader's gradient exists only inside its gradient hook.

The sources written by the heads are ``z_h · W_O[h]`` with z the head's value-weighted sum
(``attn.hook_z``); they are computed from z only for the rows that are kept, instead of the
bridge's per-head result (``use_attn_result``), which it would form for every row with grad.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from analysis.graph import QKV, GraphShape
from analysis.hooks import BridgeHooks, HookFn


class UnsupportedProjectionError(ValueError):
    """A projection or norm whose weights cannot be read as a per-head matrix."""


def _out_in(module: Any) -> torch.Tensor:
    """The weight of a linear map as ``[out, in]`` (``nn.Linear``; Hugging Face's ``Conv1D`` stores ``[in, out]``)."""
    if isinstance(module, torch.nn.Linear):
        return module.weight
    if type(module).__name__ == "Conv1D":
        return module.weight.T
    raise UnsupportedProjectionError(
        f"cannot read a per-head weight from {type(module).__name__} — use a model whose q/k/v/o projections "
        "are linear layers (GPT-2, Llama, Qwen2, Mistral)"
    )


@dataclass(frozen=True)
class AttentionWeights:
    """One layer's attention weights as the projected engine uses them.

    ``qkv[x]`` is ``[n_inputs, d_head, d_model]`` (H for q, G for k and v), ``out`` is W_O as
    ``[H, d_head, d_model]``; ``gain`` is the pre-attention norm's effective gain ``[d_model]``
    and ``rms`` whether that norm is an RMSNorm (no centring).
    """

    qkv: dict[str, torch.Tensor]
    out: torch.Tensor
    gain: torch.Tensor
    rms: bool


def attention_weights(bridge: Any, layer: int) -> AttentionWeights:
    """The weights of ``bridge``'s layer ``layer`` as views (nothing is copied)."""
    block = bridge.blocks[layer]
    attn, norm = block.attn, block.ln1
    cfg = bridge.cfg
    n_heads = int(cfg.n_heads)
    n_kv = int(getattr(cfg, "n_key_value_heads", None) or n_heads)
    d_model = int(cfg.d_model)
    qkv = {}
    for x in QKV:
        weight = _out_in(getattr(attn, x).original_component)
        heads = n_heads if x == "q" else n_kv
        qkv[x] = weight.reshape(heads, -1, d_model)
    out = _out_in(attn.o.original_component).T.reshape(n_heads, -1, d_model)
    gain = (1.0 + norm.weight) if norm.uses_weight_offset else norm.weight
    return AttentionWeights(qkv, out, gain.detach(), bool(norm.uses_rms_norm))


def normalised(x: torch.Tensor, scale: torch.Tensor, rms: bool) -> torch.Tensor:
    """x̂ ``[rows, pos, d_model]`` (float32 or wider) from the norm's input and its scale s."""
    x = x.float() if x.dtype not in (torch.float32, torch.float64) else x
    return (x if rms else x - x.mean(-1, keepdim=True)) / scale


def folded_qkv(weights: AttentionWeights) -> torch.Tensor:
    """``[H + 2G, d_head, d_model]`` float32: W_Q, W_K, W_V stacked, times the norm's gain and,
    for a LayerNorm, centred along d_model, so that ``folded[i]ᵀ g = ũ − mean(ũ)`` for
    ũ = w ⊙ W[i]ᵀ g (the first two steps of Jᵀ, for the price of one product)."""
    w = torch.cat([weights.qkv[x] for x in QKV]).float() * weights.gain.float()
    return w if weights.rms else w - w.mean(-1, keepdim=True)


def reader_gradients(
    grad: torch.Tensor,
    folded: torch.Tensor,
    norm_in: torch.Tensor,
    scale: torch.Tensor,
    rms: bool,
    copies: int,
    pad: torch.Tensor | None,
) -> torch.Tensor:
    """``[H + 2G, rows, pos, d_model]`` float32: the gradient at each head's own q, k and v
    input, summed over the ``copies`` stacked IG copies.

    ``grad`` ``[copies·rows, pos, H + 2G, d_head]`` is the gradient at the q, k and v
    projections' outputs side by side, ``folded`` from :func:`folded_qkv`, ``norm_in`` and
    ``scale`` the norm's input and scale of the same rows. Padded positions (``pad``
    ``[rows, pos]``) get zero. Each copy has its own Jacobian, so the copies are mapped one at
    a time. Dividing g by s first makes the last step of Jᵀ a single multiply-add.
    """
    rows = grad.shape[0] // copies
    total: torch.Tensor | None = None
    for c in range(copies):
        part = slice(c * rows, (c + 1) * rows)
        s = scale[part].float()
        g = grad[part].float() / s[..., None]
        if pad is not None:
            g = g.masked_fill(pad[:, :, None, None], 0)
        u = torch.einsum("bpne,ned->nbpd", g, folded)  # ũ − mean(ũ), over s
        xhat = normalised(norm_in[part], s, rms)
        along = torch.linalg.vecdot(u, xhat).unsqueeze(-1).div_(xhat.shape[-1])
        u.addcmul_(xhat, along, value=-1)
        total = u if total is None else total.add_(u)
    assert total is not None
    return total


def head_writes(z: torch.Tensor, weights: AttentionWeights) -> torch.Tensor:
    """``[H, rows, pos, d_model]`` float32: what each head adds to the residual stream,
    z_h · W_O[h] (without the shared output bias), from z ``[rows, pos, H, d_head]``."""
    return torch.einsum("bphe,hed->hbpd", z.float(), weights.out.float())


class HeadValues:
    """The heads' sources of the projected engine, kept as z: a run that stores keeps each
    layer's z ``[rows, pos, H, d_head]`` (d_model numbers per position, not H·d_model), and the
    run that subtracts turns the difference into the heads' Δ writes with one product per layer."""

    def __init__(self, attention: list[AttentionWeights]) -> None:
        self.attention = attention
        self._z: dict[int, torch.Tensor] = {}

    def store(self, layer: int, z: torch.Tensor) -> None:
        self._z[layer] = z

    def delta_writes(self, layer: int, z: torch.Tensor) -> torch.Tensor:
        """``[H, rows, pos, d_model]``: (z_stored − z) · W_O per head; the stored z is let go."""
        return head_writes(self._z.pop(layer).float() - z.float(), self.attention[layer])


def projected_reader_hooks(
    shape: GraphShape,
    hooks: BridgeHooks,
    attention: list[AttentionWeights],
    steps: int,
    pad: torch.Tensor | None,
    add_scores: Callable[[int, int, torch.Tensor], None],
    watch: Callable[[Callable[[torch.Tensor], None]], HookFn],
) -> list[tuple[str, HookFn]]:
    """Forward hooks for the q/k/v readers of the projected engine; ``add_scores(first_dst,
    n_sources, rows)`` scores reader gradients ``rows`` and ``watch(on_grad)`` is a hook that
    calls ``on_grad`` with its point's gradient. Each layer's norm input and scale are kept
    from the forward; the q, k and v projections' output gradients (``d_head`` wide) are held
    until all three have arrived, then turned into the layer's H + 2G reader gradients
    (:func:`analysis.projections.reader_gradients`) and scored in one product, and let go."""
    kept: dict[int, dict[str, torch.Tensor]] = {}

    def keep(layer: int, what: str) -> HookFn:
        def hook(x: torch.Tensor, hook: Any) -> None:
            kept.setdefault(layer, {})[what] = x.detach()

        return hook

    def on_projection_gradient(layer: int, x: str):
        def accumulate(grad: torch.Tensor) -> None:
            mine = kept[layer]
            mine[x] = grad.reshape(*grad.shape[:2], shape.n_inputs(x), -1)
            if not all(q in mine for q in QKV):
                return
            del kept[layer]
            weights = attention[layer]
            grads = torch.cat([mine[q] for q in QKV], dim=2)
            rows = reader_gradients(grads, folded_qkv(weights), mine["in"], mine["scale"], weights.rms, steps, pad)
            add_scores(shape.qkv_dst(layer, "q"), shape.head_src(layer, 0), rows.reshape(rows.shape[0], -1))

        return accumulate

    fwd: list[tuple[str, HookFn]] = []
    for layer in range(shape.n_layers):
        fwd += [(hooks.norm_in(layer), keep(layer, "in")), (hooks.norm_scale(layer), keep(layer, "scale"))]
        fwd += [(hooks.projection_out(layer, x), watch(on_projection_gradient(layer, x))) for x in QKV]
    return fwd
