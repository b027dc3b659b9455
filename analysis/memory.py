"""How much memory one attribution pass needs, from the model's shape alone.

:func:`attribution_peak_bytes` predicts the peak of one pass (``copies`` IG steps over ``rows``
prompts of ``pos`` tokens) above the loaded model, from a :class:`ModelSize` that a bridge or
a Hugging Face config gives, so a 7B model's need can be known before it is loaded. The
projected engine's peak is the sum of

- the Δ buffer: one ``d_model`` vector per source and position, ``n_src = 1 + L·(H+1)``
  (float32 for half-precision models);
- what the frozen-weight backward keeps per token and layer for each copy (counted with
  ``torch.autograd.graph.saved_tensors_hooks`` on GPT-2- and Llama-shaped bridges): about
  ``(10 + 3·b)·d_model`` bytes for the two norms, q, k, v and the kept norm input,
  ``m·b·d_mlp`` for the MLP (m = 4 for GPT-2's tanh GELU, 3 for a gated MLP) and
  ``(b + 4)·H·pos`` for the attention probabilities (``b·H·pos`` in float32, where the
  softmax needs no upcast), with b the model's bytes per element;
- the backward's working set at one layer: the layer's H + 2G reader gradients and their
  accumulator (float32, ``d_model`` each per position) and the gradients of the MLP's
  hidden activations.

The reference engine keeps the per-head q/k/v copies instead (``(H + 2G)·d_model`` per token
and layer, about three times over through their norm).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from analysis.graph import GraphShape
from analysis.hooks import Engine
from analysis.prompts import PromptBatch

GIB = 2**30


@dataclass(frozen=True)
class ModelSize:
    """The shape numbers the estimate needs; ``dtype_bytes`` is 2 for bf16/fp16, 4 for fp32."""

    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    d_mlp: int
    gated_mlp: bool
    dtype_bytes: int

    @property
    def n_src(self) -> int:
        return 1 + self.n_layers * (self.n_heads + 1)

    @classmethod
    def of_bridge(cls, bridge: Any, shape: GraphShape) -> ModelSize:
        """Of a loaded bridge whose graph is ``shape``."""
        cfg = bridge.cfg
        d_model = int(cfg.d_model)
        return cls(
            n_layers=shape.n_layers,
            d_model=d_model,
            n_heads=shape.n_heads,
            n_kv_heads=shape.kv_heads,
            d_mlp=int(getattr(cfg, "d_mlp", None) or 4 * d_model),
            gated_mlp=bool(getattr(cfg, "gated_mlp", False)),
            dtype_bytes=torch.finfo(next(bridge.parameters()).dtype).bits // 8,
        )

    @classmethod
    def of_hf_config(cls, config: Any, dtype: torch.dtype) -> ModelSize:
        """From a Hugging Face config (GPT-2 or Llama-style names), e.g. LLaMA-7B's, unloaded."""
        d_model = int(getattr(config, "hidden_size", None) or config.n_embd)
        n_heads = int(getattr(config, "num_attention_heads", None) or config.n_head)
        gated = hasattr(config, "intermediate_size")
        return cls(
            n_layers=int(getattr(config, "num_hidden_layers", None) or config.n_layer),
            d_model=d_model,
            n_heads=n_heads,
            n_kv_heads=int(getattr(config, "num_key_value_heads", None) or n_heads),
            d_mlp=int(getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None) or 4 * d_model),
            gated_mlp=gated,
            dtype_bytes=torch.finfo(dtype).bits // 8,
        )


def attribution_peak_bytes(size: ModelSize, rows: int, pos: int, copies: int, engine: Engine = "projected") -> int:
    """Predicted peak memory (bytes, above the loaded model) of one attribution pass over
    ``rows`` prompts of ``pos`` tokens with ``copies`` IG steps at once (see the module
    docstring for the terms)."""
    b = size.dtype_bytes
    d, readers = size.d_model, size.n_heads + 2 * size.n_kv_heads
    tokens = rows * pos
    delta = size.n_src * tokens * d * max(b, 4)
    if engine == "reference":
        per_layer = 3 * readers * d + 4 * size.d_mlp + 3 * size.n_heads * pos + 8 * d
        return delta + copies * size.n_layers * tokens * per_layer * b
    mlp_factor = 3 if size.gated_mlp else 4
    attention = (b + (4 if b < 4 else 0)) * size.n_heads * pos
    kept = (10 + 3 * b) * d + mlp_factor * b * size.d_mlp + attention
    working = 2 * readers * tokens * d * 4 + 2 * copies * tokens * size.d_mlp * b
    return delta + copies * size.n_layers * tokens * kept + working


def working_set_bytes(
    bridge: Any, shape: GraphShape, rows: int, pos: int, copies: int, engine: Engine = "projected"
) -> int:
    """Estimated peak memory of one attribution pass over ``rows`` prompts of ``pos`` tokens
    with ``copies`` IG steps at once (:func:`analysis.memory.attribution_peak_bytes`)."""
    return attribution_peak_bytes(ModelSize.of_bridge(bridge, shape), rows, pos, copies, engine)


#: On a CPU, without a budget, the IG steps are stacked into one pass while its predicted working
#: set stays within this many bytes. A small pass is dominated by fixed costs (hooks, per-layer
#: products, the Python around them) that stacking pays once: 1.5× faster at 51 MiB on the
#: default item model. A large one is bound by memory traffic, which stacking only widens: one
#: step per pass is 1.1× faster at 1.1 GiB stacked (GPT-2-small shape, 2 layers,
#: ``benchmarks/attribution_scale.py``). The bound lies between the two measurements.
CPU_STACKING_BYTES = 256 * 2**20


def plan_passes(
    bridge: Any,
    shape: GraphShape,
    batch: PromptBatch,
    steps: int,
    max_memory: int | None,
    engine: Engine = "projected",
) -> tuple[int, int]:
    """``(rows, steps_per_pass)`` for ``batch`` within ``max_memory`` bytes: fewer IG steps per
    pass first (same work, less memory), then fewer prompts per pass; never below one of each.
    Without a budget, a GPU runs all steps stacked in one pass (a wider batch keeps it busy) and a
    CPU as many as fit :data:`CPU_STACKING_BYTES` (at least one), all prompts at once."""
    pos = batch.clean.shape[1]

    def most_steps_within(budget: int) -> int | None:
        fitting = (
            c for c in range(steps, 0, -1) if working_set_bytes(bridge, shape, len(batch), pos, c, engine) <= budget
        )
        return next(fitting, None)

    if max_memory is None:
        if next(bridge.parameters()).device.type == "cuda":
            return len(batch), steps
        return len(batch), most_steps_within(CPU_STACKING_BYTES) or 1
    copies = most_steps_within(max_memory)
    if copies is not None:
        return len(batch), copies
    per_prompt = working_set_bytes(bridge, shape, 1, pos, 1, engine)
    return max(1, min(len(batch), max_memory // per_prompt)), 1
