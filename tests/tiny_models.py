"""Tiny seeded random causal LMs and their tokenizer, shared by the engine and module tests.

Every builder seeds torch with 0 just before the model is made, so a model of one architecture
and config has the same weights in every test that builds it.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import (
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from cure_core.prompts import SPECIAL_TOKENS, ItemVocab

VOCAB = 24
FIRST = len(SPECIAL_TOKENS)  # the first token id that is not a special token

_CLASSES: dict[str, tuple[type, type]] = {
    "gpt2": (GPT2Config, GPT2LMHeadModel),
    "llama": (LlamaConfig, LlamaForCausalLM),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM),
    "mistral": (MistralConfig, MistralForCausalLM),
}


def seeded_model(arch: str, **config: object) -> torch.nn.Module:
    """A random ``arch`` model of VOCAB tokens with these config fields, weights drawn after
    ``torch.manual_seed(0)``."""
    config_class, model_class = _CLASSES[arch]
    torch.manual_seed(0)
    return model_class(config_class(vocab_size=VOCAB, **config))


def tiny_model(arch: str, heads: int = 4, kv_heads: int = 2) -> torch.nn.Module:
    """The engine tests' model: 2 layers, d_model 32, 16 positions, weights of std 0.3. GPT-2 has
    2 heads and no dropout; Llama and Qwen2 have ``heads`` query heads reading ``kv_heads``
    key/value heads and d_mlp 64."""
    if arch == "gpt2":
        fields = dict(n_embd=32, n_layer=2, n_head=2, n_positions=16, resid_pdrop=0, embd_pdrop=0, attn_pdrop=0)
    else:
        fields = dict(hidden_size=32, num_hidden_layers=2, max_position_embeddings=16, intermediate_size=64)
        fields |= dict(num_attention_heads=heads, num_key_value_heads=kv_heads)
    return seeded_model(arch, initializer_range=0.3, **fields)


def save_tokenizer(folder: Path) -> None:
    """The word-level tokenizer of VOCAB tokens (the special tokens, then ``t0``, ``t1``, …)."""
    ItemVocab(SPECIAL_TOKENS + [f"t{i}" for i in range(VOCAB - FIRST)]).to_hf_tokenizer().save_pretrained(folder)


def tiny_bridge(arch: str, tokenizer_folder: Path) -> torch.nn.Module:
    """:func:`tiny_model` in eval mode, booted into a TransformerBridge (in eval mode too) with
    :func:`save_tokenizer`'s tokenizer, saved in ``tokenizer_folder`` (the bridge wants a named one)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformer_lens.model_bridge import TransformerBridge

    save_tokenizer(tokenizer_folder)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder)
    booted = TransformerBridge.boot_transformers(arch, hf_model=tiny_model(arch).eval(), tokenizer=tokenizer)
    booted.eval()
    return booted
