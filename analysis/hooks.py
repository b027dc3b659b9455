"""Where the graph's nodes live in a TransformerLens 4.x ``TransformerBridge``.

Sources (writers to the residual stream) and destinations (readers) of method.md §3 map to
bridge hook points, once the three per-head flags are on (:func:`edge_hooks`):

======================  =====================================  ===========================
node                    hook point                             shape
======================  =====================================  ===========================
``input`` (source)      ``hook_embed`` (+ ``hook_pos_embed``)  ``[batch, pos, d_model]``
``a{l}.h{h}`` (source)  ``blocks.{l}.attn.hook_result``        ``[batch, pos, head, d_model]``
``m{l}`` (source)       ``blocks.{l}.hook_mlp_out``            ``[batch, pos, d_model]``
``a{l}.h{h}<q>``        ``blocks.{l}.attn.hook_q_input``       ``[batch, pos, head, d_model]``
``a{l}.h|kv{g}<k|v>``   ``blocks.{l}.attn.hook_{k,v}_input``   ``[batch, pos, kv_head, d_model]``
``m{l}`` (destination)  ``blocks.{l}.hook_mlp_in``             ``[batch, pos, d_model]``
``logits``              ``blocks.{L-1}.hook_resid_post``       ``[batch, pos, d_model]``
======================  =====================================  ===========================

That table is the ``reference`` engine's. The default ``projected`` engine
(:mod:`analysis.projections`) leaves the three per-head flags off and reads the same nodes from
the plain model: a head's source from ``blocks.{l}.attn.hook_z`` and W_O, a q/k/v reader's
gradient from ``blocks.{l}.attn.{q,k,v}.hook_out`` through W_Q/W_K/W_V and the Jacobian of
``blocks.{l}.ln1`` (its input ``hook_in`` and scale ``hook_scale``). Both engines give the same
scores; only memory and time differ.

Destinations are read *before* their LayerNorm, so in a pre-LayerNorm model each one is the
plain sum of the sources upstream of it (plus constant biases such as ``b_O``). With
grouped-query attention the k and v inputs have one slice per key/value head (TransformerLens
4.3 forks the residual ``n_key_value_heads`` times for them).

Left-padded batches run with ``attention_mask`` (:func:`run_kwargs`); the bridge derives the
position ids from it, so the real tokens sit at the same positions as without padding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch

from analysis.errors import AnalysisInputError
from analysis.graph import QKV, GraphShape

HookFn = Callable[..., torch.Tensor | None]
Engine = Literal["projected", "reference"]
ENGINES: tuple[Engine, ...] = ("projected", "reference")


class UnsupportedModelError(ValueError):
    """The model's architecture cannot be split into the edge graph (post-LN, parallel blocks …)."""


@dataclass(frozen=True)
class BridgeHooks:
    """Hook-point names of one bridge, in graph order."""

    n_layers: int
    has_pos_embed: bool

    embed: str = "hook_embed"
    pos_embed: str = "hook_pos_embed"
    unembed_in: str = "unembed.hook_in"

    def result(self, layer: int) -> str:
        return f"blocks.{layer}.attn.hook_result"

    def mlp_out(self, layer: int) -> str:
        return f"blocks.{layer}.hook_mlp_out"

    def head_input(self, layer: int, qkv: str) -> str:
        return f"blocks.{layer}.attn.hook_{qkv}_input"

    def mlp_in(self, layer: int) -> str:
        return f"blocks.{layer}.hook_mlp_in"

    def projection_out(self, layer: int, qkv: str) -> str:
        """The q, k or v projection's output ``[batch, pos, head, d_head]`` (before any rotary embedding)."""
        return f"blocks.{layer}.attn.{qkv}.hook_out"

    def z(self, layer: int) -> str:
        """Each head's value-weighted sum ``[batch, pos, head, d_head]``, the input of W_O."""
        return f"blocks.{layer}.attn.hook_z"

    def norm_in(self, layer: int) -> str:
        return f"blocks.{layer}.ln1.hook_in"

    def norm_scale(self, layer: int) -> str:
        return f"blocks.{layer}.ln1.hook_scale"

    def pattern(self, layer: int) -> str:
        """Attention probabilities ``[batch, head, query, key]`` (read for display, not a graph node)."""
        return f"blocks.{layer}.attn.hook_pattern"

    @property
    def final_resid(self) -> str:
        return f"blocks.{self.n_layers - 1}.hook_resid_post"


def metric_input_hooks(hooks: BridgeHooks, metric: object) -> list[tuple[str, HookFn]]:
    """For a metric that reads the last position only, unembed just that position."""
    if not getattr(metric, "last_position_only", False):
        return []
    return [(hooks.unembed_in, lambda x, hook: x[:, -1:])]


def run_kwargs(attention_mask: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Keyword arguments of a bridge forward on a (possibly left-padded) batch."""
    return {} if attention_mask is None else {"attention_mask": attention_mask}


def graph_shape(bridge: Any) -> GraphShape:
    cfg = bridge.cfg
    n_kv = getattr(cfg, "n_key_value_heads", None)
    return GraphShape(int(cfg.n_layers), int(cfg.n_heads), int(n_kv) if n_kv else None)


_PARALLEL_BLOCKS = (
    "the model runs attention and MLP in parallel — use a sequential pre-LayerNorm model (GPT-2 or Llama style)"
)


def bridge_hooks(bridge: Any) -> BridgeHooks:
    """The hook names of ``bridge``; raises :class:`UnsupportedModelError` for models the
    edge graph does not describe (post-LayerNorm blocks, parallel attention and MLP)."""
    cfg = bridge.cfg
    if getattr(cfg, "parallel_attn_mlp", False):
        raise UnsupportedModelError(_PARALLEL_BLOCKS)
    if getattr(cfg, "original_architecture", "") in {"BertForMaskedLM", "OPTForCausalLM"} or getattr(
        cfg, "post_layernorm", False
    ):
        raise UnsupportedModelError("the model normalises after the residual add — use a pre-LayerNorm model")
    hooks = BridgeHooks(int(cfg.n_layers), has_pos_embed="hook_pos_embed" in bridge.hook_dict)
    missing = [name for name in _all_names(hooks) if name not in bridge.hook_dict]
    if missing:
        raise UnsupportedModelError(
            f"the bridge has no hook point(s) {', '.join(missing[:4])} — use a TransformerLens 4.x TransformerBridge"
        )
    return hooks


def _all_names(hooks: BridgeHooks) -> list[str]:
    names = [hooks.embed, hooks.final_resid, hooks.unembed_in]
    for layer in range(hooks.n_layers):
        names += [hooks.result(layer), hooks.mlp_out(layer), hooks.mlp_in(layer), hooks.z(layer)]
        names += [hooks.norm_in(layer), hooks.norm_scale(layer)]
        names += [name for x in QKV for name in (hooks.head_input(layer, x), hooks.projection_out(layer, x))]
    return names


def checked_engine(engine: str) -> Engine:
    if engine not in ENGINES:
        raise AnalysisInputError(f"unknown attribution engine {engine!r}", f"use one of {', '.join(ENGINES)}")
    return engine  # type: ignore[return-value]


@contextmanager
def edge_hooks(bridge: Any, engine: Engine = "reference") -> Iterator[BridgeHooks]:
    """Turn on ``hook_mlp_in`` and, for the ``reference`` engine, per-head results and split
    q/k/v inputs (the ``projected`` engine turns both off); freeze the weights.

    Everything is restored on exit, also after an error: the three flags, each parameter's
    ``requires_grad`` and train/eval mode. Hooks are attached per run with ``bridge.hooks(...)``,
    which removes them on exit.
    Weights are frozen because attribution needs gradients with respect to activations only.
    """
    per_head = checked_engine(engine) == "reference"
    hooks = bridge_hooks(bridge)
    cfg = bridge.cfg
    saved_flags = (
        cfg.use_attn_result,
        cfg.use_split_qkv_input,
        cfg.use_hook_mlp_in,
        bool(getattr(cfg, "use_attn_in", False)),
    )
    saved_grad = [(p, p.requires_grad) for p in bridge.parameters()]
    was_training = bridge.training
    try:
        if saved_flags[3]:
            bridge.set_use_attn_in(False)
        bridge.set_use_attn_result(per_head)
        bridge.set_use_split_qkv_input(per_head)
        bridge.set_use_hook_mlp_in(True)
        for p, _ in saved_grad:
            p.requires_grad_(False)
        bridge.eval()
        yield hooks
    finally:
        bridge.set_use_attn_result(saved_flags[0])
        bridge.set_use_split_qkv_input(saved_flags[1])
        bridge.set_use_hook_mlp_in(saved_flags[2])
        if saved_flags[3]:
            bridge.set_use_attn_in(True)
        for p, flag in saved_grad:
            p.requires_grad_(flag)
        bridge.train(was_training)


def attached_hook_count(bridge: Any) -> int:
    """Forward and backward hooks currently attached to any hook point (0 when clean)."""
    return sum(len(point.fwd_hooks) + len(point.bwd_hooks) for point in set(bridge.hook_dict.values()))
