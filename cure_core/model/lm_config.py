"""The Hugging Face config of a causal LM trained here (item or text recipe): one builder, so
both recipes make their GPT-2 and Llama the same way (pre-LayerNorm, tied embeddings)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # transformers is imported when a config is built, not when the CLI parses
    from transformers import PretrainedConfig


def causal_lm_config(
    arch: Literal["gpt2", "llama"],
    *,
    vocab_size: int,
    n_positions: int,
    n_layer: int,
    n_head: int,
    d_model: int,
    d_mlp: int,
    dropout: float,
    attention_dropout: float,
    activation: str = "gelu_pytorch_tanh",
    n_kv_head: int | None = None,
    eos_id: int = 0,
    pad_id: int = 0,
) -> PretrainedConfig:
    """GPT-2 (``activation`` in its MLP; ``dropout`` on the residual and embeddings) or Llama
    (SiLU; ``n_kv_head`` key/value heads, default ``n_head``: no grouped-query attention)."""
    from transformers import GPT2Config, LlamaConfig

    if arch == "gpt2":
        return GPT2Config(
            vocab_size=vocab_size,
            n_positions=n_positions,
            n_embd=d_model,
            n_layer=n_layer,
            n_head=n_head,
            n_inner=d_mlp,
            activation_function=activation,
            resid_pdrop=dropout,
            embd_pdrop=dropout,
            attn_pdrop=attention_dropout,
            bos_token_id=eos_id,
            eos_token_id=eos_id,
            pad_token_id=pad_id,
            tie_word_embeddings=True,
        )
    return LlamaConfig(
        vocab_size=vocab_size,
        max_position_embeddings=n_positions,
        hidden_size=d_model,
        intermediate_size=d_mlp,
        num_hidden_layers=n_layer,
        num_attention_heads=n_head,
        num_key_value_heads=n_kv_head or n_head,
        attention_dropout=attention_dropout,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        tie_word_embeddings=True,
    )
