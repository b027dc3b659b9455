"""Modules of the recommender and the parameter slices each one owns (method.md §6).

Module names follow the circuit graph: ``a{l}.h{h}`` (attention head), ``m{l}`` (MLP), plus
embedding rows named by their vocabulary token: ``u:<user id>`` and ``i:<item id>``.

- a head owns its columns of W_Q, W_K, W_V (and those bias entries) and its rows of W_O
  (GPT-2's ``c_attn``/``c_proj`` are ``x @ W`` Conv1D layers; Llama's ``q/k/v/o_proj`` are
  ``W @ x`` Linear layers, so rows and columns swap);
- an MLP owns all its weights and biases;
- an embedding row is one row of the input embedding (GPT-2 ties it to the output embedding;
  only the ``<yes>``/``<no>`` rows of that are read at the answer, and those are no module's).

The attention output bias, layer norms and position embeddings belong to no module: no group
rule ever updates them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import torch
from transformers import PreTrainedModel

Index = tuple[slice, ...]
_HEAD = re.compile(r"^a(\d+)\.h(\d+)$")
_MLP = re.compile(r"^m(\d+)$")


def _arch(model: PreTrainedModel) -> str:
    kind = model.config.model_type
    if kind not in ("gpt2", "llama"):
        raise ValueError(f"module slices are defined for GPT-2 and Llama models, not {kind!r}")
    return kind


def embedding_param_name(model: PreTrainedModel) -> str:
    weight = model.get_input_embeddings().weight
    return next(name for name, p in model.named_parameters() if p is weight)


def module_slices(
    model: PreTrainedModel, module: str, vocab_index: dict[str, int] | None = None
) -> dict[str, list[Index]]:
    """``{parameter name: [index, ...]}`` of the parameter entries ``module`` owns."""
    arch = _arch(model)
    cfg = model.config
    n_heads = cfg.n_head if arch == "gpt2" else cfg.num_attention_heads
    d_model = cfg.n_embd if arch == "gpt2" else cfg.hidden_size
    d_head = d_model // n_heads
    params = dict(model.named_parameters())
    if match := _HEAD.match(module):
        layer, head = int(match[1]), int(match[2])
        cols = slice(head * d_head, (head + 1) * d_head)
        if arch == "gpt2":
            prefix = f"transformer.h.{layer}.attn."
            qkv = [slice(i * d_model + cols.start, i * d_model + cols.stop) for i in range(3)]
            return {
                prefix + "c_attn.weight": [(slice(None), s) for s in qkv],
                prefix + "c_attn.bias": [(s,) for s in qkv],
                prefix + "c_proj.weight": [(cols, slice(None))],
            }
        prefix = f"model.layers.{layer}.self_attn."
        out = {prefix + f"{p}_proj.weight": [(cols, slice(None))] for p in "qkv"}
        out.update({prefix + f"{p}_proj.bias": [(cols,)] for p in "qkv" if prefix + f"{p}_proj.bias" in params})
        out[prefix + "o_proj.weight"] = [(slice(None), cols)]
        return out
    if match := _MLP.match(module):
        prefix = f"transformer.h.{match[1]}.mlp." if arch == "gpt2" else f"model.layers.{match[1]}.mlp."
        return {name: [(slice(None),) * params[name].ndim] for name in params if name.startswith(prefix)}
    if module.startswith(("u:", "i:")):
        if vocab_index is None or module not in vocab_index:
            raise ValueError(f"embedding row {module!r} is not in the model's vocabulary")
        row = vocab_index[module]
        return {embedding_param_name(model): [(slice(row, row + 1), slice(None))]}
    raise ValueError(f"unknown module {module!r} — use a{{layer}}.h{{head}}, m{{layer}}, u:<user> or i:<item>")


def parameter_mask(
    model: PreTrainedModel, modules: Iterable[str], vocab_index: dict[str, int] | None = None
) -> dict[str, torch.Tensor]:
    """Boolean masks (same shapes as the parameters) of every entry owned by ``modules``."""
    params = dict(model.named_parameters())
    masks = {name: torch.zeros_like(p, dtype=torch.bool) for name, p in params.items()}
    for module in modules:
        for name, indices in module_slices(model, module, vocab_index).items():
            for index in indices:
                masks[name][index] = True
    return masks
