"""Module → parameter slices on tiny random GPT-2, Llama (GQA 4/2), Qwen2 (GQA 4/2, q/k/v biases)
and Mistral (GQA, head_dim ≠ d_model / heads), plain and booted into a TransformerBridge: the
modules' slices cover every attention q/k/v/o weight and q/k/v bias and every MLP parameter
exactly once, and nothing else."""

from __future__ import annotations

import os
from collections import defaultdict

import pytest
import torch
from tiny_models import VOCAB, save_tokenizer, seeded_model
from transformers import AutoTokenizer

from cure_core.errors import CureError
from cure_core.model.example_checkpoint import make_model
from cure_core.modules import (
    attention_shape,
    canonical_name,
    list_modules,
    module_slices,
    parameter_mask,
    parameter_names,
)

D_MODEL, D_HEAD = 64, 16  # the example checkpoints: 4 heads of 16


# What the two hand-made models share: 2 layers, d_model 32, 4 query heads, d_mlp 48
SMALL = {
    "hidden_size": 32,
    "intermediate_size": 48,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 32,
}


def mistral() -> torch.nn.Module:
    return seeded_model("mistral", **SMALL, num_key_value_heads=2, head_dim=12).eval()


def llama(kv_heads: int, bias: bool = False) -> torch.nn.Module:
    return seeded_model("llama", **SMALL, num_key_value_heads=kv_heads, attention_bias=bias, mlp_bias=bias).eval()


MODELS = {
    "gpt2": lambda: make_model("gpt2", VOCAB),
    "llama": lambda: make_model("llama", VOCAB),
    "qwen2": lambda: make_model("qwen2", VOCAB),
    "mistral": mistral,
    "llama-mha-biases": lambda: llama(4, bias=True),
}


def _owned_by_rule(canonical: set[str]) -> bool:
    """Whether the rule gives a parameter (by any of its canonical names) to some module:
    attention q/k/v weights and biases, attention output weights (not their bias), MLPs."""
    for name in canonical:
        parts = name.split(".")
        if "mlp" in parts:
            return True
        if parts[-2] in ("q_proj", "k_proj", "v_proj", "c_attn", "q", "k", "v"):
            return True
        if parts[-2] in ("o_proj", "c_proj") and parts[-3] in ("self_attn", "attn") and parts[-1] == "weight":
            return True
    return False


def _counts(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """How many times each parameter entry is owned over all modules."""
    counts = {name: torch.zeros_like(p, dtype=torch.int32) for name, p in model.named_parameters()}
    for module in list_modules(model):
        for name, indices in module_slices(model, module).items():
            for index in indices:
                counts[name][index] += 1
    return counts


def _assert_exact_cover(model: torch.nn.Module) -> None:
    aliases: dict[str, set[str]] = defaultdict(set)
    actual = parameter_names(model)
    for canonical, name in actual.items():
        aliases[name].add(canonical)
    counts = _counts(model)
    owned = [name for name in counts if _owned_by_rule(aliases[name])]
    assert any("mlp" in n for n in owned) and any("attn" in n for n in owned)
    for name, count in counts.items():
        expected = 1 if name in owned else 0
        assert torch.all(count == expected), f"{name}: counts {count.unique().tolist()}, expected {expected}"


@pytest.mark.parametrize("arch", list(MODELS))
def test_all_modules_cover_attention_and_mlp_parameters_exactly_once(arch):
    _assert_exact_cover(MODELS[arch]())


def test_grouped_heads_own_q_and_o_and_kv_heads_own_k_and_v():
    model = make_model("qwen2", VOCAB)
    shape = attention_shape(model)
    assert (shape.n_heads, shape.n_kv_heads, shape.d_head, shape.grouped) == (4, 2, D_HEAD, True)
    assert list_modules(model)[:7] == ["a0.h0", "a0.h1", "a0.h2", "a0.h3", "a0.kv0", "a0.kv1", "m0"]
    prefix = "model.layers.1.self_attn."
    head = parameter_mask(model, ["a1.h2"])
    rows = slice(2 * D_HEAD, 3 * D_HEAD)
    assert head[prefix + "q_proj.weight"][rows].all() and head[prefix + "q_proj.weight"].sum() == D_HEAD * D_MODEL
    assert head[prefix + "q_proj.bias"].sum() == D_HEAD and head[prefix + "q_proj.bias"][rows].all()
    assert head[prefix + "o_proj.weight"][:, rows].all() and head[prefix + "o_proj.weight"].sum() == D_MODEL * D_HEAD
    assert not any(head[prefix + f"{p}_proj.{w}"].any() for p in "kv" for w in ("weight", "bias"))
    kv = parameter_mask(model, ["a1.kv1"])
    rows = slice(D_HEAD, 2 * D_HEAD)
    for p in "kv":
        assert kv[prefix + f"{p}_proj.weight"][rows].all() and kv[prefix + f"{p}_proj.weight"].sum() == D_HEAD * D_MODEL
        assert kv[prefix + f"{p}_proj.bias"][rows].all() and kv[prefix + f"{p}_proj.bias"].sum() == D_HEAD
    assert sum(int(m.sum()) for m in kv.values()) == 2 * (D_HEAD * D_MODEL + D_HEAD)


def test_without_grouping_a_head_owns_q_k_v_and_o_and_there_are_no_kv_modules():
    model = llama(4, bias=True)
    assert not any(".kv" in m for m in list_modules(model))
    mask = parameter_mask(model, ["a0.h1"])
    rows = slice(8, 16)  # d_head 8
    for p in "qkv":
        assert mask[f"model.layers.0.self_attn.{p}_proj.weight"][rows].all()
        assert mask[f"model.layers.0.self_attn.{p}_proj.bias"].sum() == 8
    assert not mask["model.layers.0.self_attn.o_proj.bias"].any()
    with pytest.raises(CureError, match="key/value head"):
        parameter_mask(model, ["a0.kv1"])


@pytest.mark.parametrize("bad", ["a2.h0", "a0.h4", "a0.kv2", "m2", "x1"])
def test_modules_the_model_does_not_have_are_refused(bad):
    with pytest.raises(CureError):
        module_slices(make_model("llama", VOCAB), bad)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tokenizer")
    save_tokenizer(folder)
    return AutoTokenizer.from_pretrained(folder)


@pytest.mark.parametrize("arch", ["gpt2", "qwen2"])
def test_slices_resolve_on_a_bridge_booted_model(arch, tokenizer):
    """Booting wraps the submodules in place (``._original_component`` in every name; GPT-2
    gets split q/k/v copies): the cover stays exact and the masks match the plain model's."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformer_lens.model_bridge import TransformerBridge

    model = MODELS[arch]()
    plain = parameter_mask(MODELS[arch](), ["a0.h1", "a1.h3", "m1"] + (["a1.kv0"] if arch != "gpt2" else []))
    TransformerBridge.boot_transformers(arch, hf_model=model, tokenizer=tokenizer)
    assert any("._original_component" in name for name, _ in model.named_parameters())
    _assert_exact_cover(model)
    booted = parameter_mask(model, ["a0.h1", "a1.h3", "m1"] + (["a1.kv0"] if arch != "gpt2" else []))
    by_canonical = parameter_names(model)
    for name, mask in plain.items():
        assert torch.equal(booted[by_canonical[name]], mask), name
    assert canonical_name("model.layers.0._original_component.self_attn._original_component.q_proj.weight") == (
        "model.layers.0.self_attn.q_proj.weight"
    )
