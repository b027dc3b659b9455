"""Modules of the recommender and the parameter slices each one owns (method.md §6).

Module names follow the circuit graph: ``a{l}.h{h}`` (attention head), ``a{l}.kv{g}`` (a
key/value head shared by several query heads, grouped-query attention only), ``m{l}`` (MLP),
plus embedding rows named by their vocabulary token: ``u:<user id>`` and ``i:<item id>``.

- without grouped-query attention (G = H key/value heads, GPT-2 and the item model) a head owns
  its slices of W_Q, W_K, W_V (and those bias entries) and of W_O; there are no kv modules;
- with grouped-query attention (Llama-3, Qwen2, Mistral: G < H) a head owns its slices of W_Q
  (and the q bias) and of W_O, and the key/value head ``a{l}.kv{g}`` owns its slices of W_K
  and W_V (and their biases): one K/V projection is read by H/G query heads, so it is one
  module of its own and gets one update rule (``cure_core.groups`` decides which);
- an MLP owns all its weights and biases;
- an embedding row is one row of the input embedding (GPT-2 ties it to the output embedding;
  only the ``<yes>``/``<no>`` rows of that are read at the answer, and those are no module's).

A head's slice is its ``d_head`` outputs of a projection and its ``d_head`` inputs of the output
projection. GPT-2's ``c_attn``/``c_proj`` are ``x @ W`` Conv1D layers (outputs are columns);
Llama's ``q/k/v/o_proj`` are ``W @ x`` Linear layers (outputs are rows).

The attention output bias, layer norms and position embeddings belong to no module: no group
rule ever updates them.

Slices are defined on the canonical Hugging Face parameter names. TransformerLens'
``TransformerBridge.boot_transformers(hf_model=...)`` wraps the model's submodules in place,
which inserts ``._original_component`` into every name (and, for GPT-2, adds separate q/k/v
``nn.Linear`` copies split from ``c_attn``, ``attn.q|k|v``, that the bridge's forward reads);
names are resolved through every alias of a parameter with ``._original_component`` removed, and
returned as the model's actual (first) name of that parameter.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from cure_core.errors import CureError

Index = tuple[slice, ...]
ARCHITECTURES = ("gpt2", "llama", "qwen2", "mistral")
_HEAD = re.compile(r"^a(\d+)\.h(\d+)$")
_KV = re.compile(r"^a(\d+)\.kv(\d+)$")
_MLP = re.compile(r"^m(\d+)$")
_WRAPPER = "._original_component"


@dataclass(frozen=True)
class AttentionShape:
    """Layers, query heads, key/value heads and head width of a supported model."""

    arch: str
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_head: int

    @property
    def grouped(self) -> bool:
        return self.n_kv_heads != self.n_heads


def attention_shape(model: PreTrainedModel) -> AttentionShape:
    """The attention shape of ``model``; a ``CureError`` for architectures without slice rules."""
    cfg = model.config
    arch = cfg.model_type
    if arch not in ARCHITECTURES:
        raise CureError(
            f"module slices are not defined for {arch!r} models",
            f"use a model of type {', '.join(ARCHITECTURES)}",
        )
    if arch == "gpt2":
        return AttentionShape(arch, cfg.n_layer, cfg.n_head, cfg.n_head, cfg.n_embd // cfg.n_head)
    n_heads = cfg.num_attention_heads
    n_kv = getattr(cfg, "num_key_value_heads", None) or n_heads
    d_head = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_heads
    return AttentionShape(arch, cfg.num_hidden_layers, n_heads, n_kv, d_head)


def canonical_name(name: str) -> str:
    """A parameter name with TransformerBridge's ``._original_component`` wrappers removed."""
    return name.replace(_WRAPPER, "")


def parameter_names(model: torch.nn.Module) -> dict[str, str]:
    """``{canonical name: actual name}`` over every alias of every parameter.

    The actual name is the one ``model.named_parameters()`` lists (the first alias); on a plain
    Hugging Face model both names are the same.
    """
    first = {id(p): name for name, p in model.named_parameters()}
    names: dict[str, str] = {}
    for alias, param in model.named_parameters(remove_duplicate=False):
        names.setdefault(canonical_name(alias), first[id(param)])
    return names


def embedding_param_name(model: PreTrainedModel) -> str:
    weight = model.get_input_embeddings().weight
    return next(name for name, p in model.named_parameters() if p is weight)


def list_modules(model: PreTrainedModel) -> list[str]:
    """Every head and MLP module of ``model`` in layer order: per layer the heads ``a{l}.h{h}``,
    the key/value heads ``a{l}.kv{g}`` when attention is grouped, then ``m{l}``."""
    shape = attention_shape(model)
    modules = []
    for layer in range(shape.n_layers):
        modules += [f"a{layer}.h{h}" for h in range(shape.n_heads)]
        if shape.grouped:
            modules += [f"a{layer}.kv{g}" for g in range(shape.n_kv_heads)]
        modules.append(f"m{layer}")
    return modules


def _gpt2_head(layer: int, head: int, shape: AttentionShape) -> dict[str, list[Index]]:
    """Canonical slices of a GPT-2 head: columns of the fused Conv1D ``c_attn`` (q | k | v),
    rows of ``c_proj``, and rows of the bridge's split q/k/v Linear copies when present."""
    d_model = shape.n_heads * shape.d_head
    cols = slice(head * shape.d_head, (head + 1) * shape.d_head)
    qkv = [slice(i * d_model + cols.start, i * d_model + cols.stop) for i in range(3)]
    prefix = f"transformer.h.{layer}.attn."
    out: dict[str, list[Index]] = {
        prefix + "c_attn.weight": [(slice(None), s) for s in qkv],
        prefix + "c_attn.bias": [(s,) for s in qkv],
        prefix + "c_proj.weight": [(cols, slice(None))],
    }
    for p in "qkv":
        out[prefix + f"{p}.weight"] = [(cols, slice(None))]
        out[prefix + f"{p}.bias"] = [(cols,)]
    return out


def _canonical_slices(module: str, shape: AttentionShape) -> dict[str, list[Index]] | str:
    """Slices by canonical name, or the MLP name prefix (an MLP owns everything under it)."""
    if match := _HEAD.match(module):
        layer, head = int(match[1]), int(match[2])
        if layer >= shape.n_layers or head >= shape.n_heads:
            raise CureError(
                f"{module!r} is not a head of this {shape.n_layers}-layer, {shape.n_heads}-head model",
                "name an existing head",
            )
        if shape.arch == "gpt2":
            return _gpt2_head(layer, head, shape)
        rows = slice(head * shape.d_head, (head + 1) * shape.d_head)
        prefix = f"model.layers.{layer}.self_attn."
        own = "q" if shape.grouped else "qkv"  # with GQA, k and v belong to the kv head
        out: dict[str, list[Index]] = {prefix + f"{p}_proj.weight": [(rows, slice(None))] for p in own}
        out.update({prefix + f"{p}_proj.bias": [(rows,)] for p in own})
        out[prefix + "o_proj.weight"] = [(slice(None), rows)]
        return out
    if match := _KV.match(module):
        layer, group = int(match[1]), int(match[2])
        if not shape.grouped:
            raise CureError(
                f"{module!r} names a key/value head, but this model has as many key/value heads as query heads",
                f"name the head instead (a{layer}.h{group}): it owns its own k and v",
            )
        if layer >= shape.n_layers or group >= shape.n_kv_heads:
            raise CureError(
                f"{module!r} is not a key/value head of this {shape.n_layers}-layer model with "
                f"{shape.n_kv_heads} key/value heads",
                "name an existing key/value head",
            )
        rows = slice(group * shape.d_head, (group + 1) * shape.d_head)
        prefix = f"model.layers.{layer}.self_attn."
        out = {prefix + f"{p}_proj.weight": [(rows, slice(None))] for p in "kv"}
        out.update({prefix + f"{p}_proj.bias": [(rows,)] for p in "kv"})
        return out
    if match := _MLP.match(module):
        if int(match[1]) >= shape.n_layers:
            raise CureError(f"{module!r} is not an MLP of this {shape.n_layers}-layer model", "name an existing MLP")
        return f"transformer.h.{match[1]}.mlp." if shape.arch == "gpt2" else f"model.layers.{match[1]}.mlp."
    raise CureError(
        f"unknown module {module!r}", "use a{layer}.h{head}, a{layer}.kv{group}, m{layer}, u:<user> or i:<item>"
    )


def module_slices(
    model: PreTrainedModel, module: str, vocab_index: dict[str, int] | None = None
) -> dict[str, list[Index]]:
    """``{parameter name: [index, ...]}`` of the parameter entries ``module`` owns, by the
    model's actual parameter names (a canonical parameter the model lacks, such as a bias it
    does not have, is skipped)."""
    return _Resolver(model, vocab_index).slices(module)


def parameter_mask(
    model: PreTrainedModel,
    modules: Iterable[str],
    vocab_index: dict[str, int] | None = None,
    only: Collection[str] | None = None,
) -> dict[str, torch.Tensor]:
    """Boolean masks (same shapes as the parameters) of every entry owned by ``modules``.

    ``only``: the (actual) parameter names to build masks for; the rest are not allocated (a
    LoRA run needs the projections' masks alone, not a second 7B of booleans)."""
    resolver = _Resolver(model, vocab_index)
    masks = {
        name: torch.zeros_like(p, dtype=torch.bool)
        for name, p in resolver.params.items()
        if only is None or name in only
    }
    for module in modules:
        for name, indices in resolver.slices(module).items():
            for index in indices:
                if name in masks:
                    masks[name][index] = True
    return masks


class _Resolver:
    """Module slices of one model, with its names resolved once (a 7B model has ~1,300 modules)."""

    def __init__(self, model: PreTrainedModel, vocab_index: dict[str, int] | None) -> None:
        self.model = model
        self.vocab_index = vocab_index
        self.params = dict(model.named_parameters())
        self.names = parameter_names(model)
        self._shape: AttentionShape | None = None

    def slices(self, module: str) -> dict[str, list[Index]]:
        if module.startswith(("u:", "i:")):
            if self.vocab_index is None or module not in self.vocab_index:
                raise CureError(
                    f"embedding row {module!r} is not in the model's vocabulary", "name a known user or item"
                )
            row = self.vocab_index[module]
            return {embedding_param_name(self.model): [(slice(row, row + 1), slice(None))]}
        if self._shape is None:
            self._shape = attention_shape(self.model)
        slices = _canonical_slices(module, self._shape)
        if isinstance(slices, str):  # an MLP: every parameter under its prefix, each once
            actual = {self.names[c] for c in self.names if c.startswith(slices)}
            return {name: [(slice(None),) * self.params[name].ndim] for name in sorted(actual)}
        return {self.names[c]: indices for c, indices in slices.items() if c in self.names}
