"""The text recipe: a causal LM trained here on words, the way a TALLRec-style model reads them.

``cure ... --recipe text`` works on this model instead of the item-token one: a GPT-2- or
Llama-architecture LM with a byte-level BPE tokenizer trained on its own training prompts,
reading a shipped profile (``compact`` by default, user id included so that a user can be
memorised). It is saved as a Hugging Face folder and loaded back through the same code as a
user's checkpoint, so every text-mode path (profiles, same-length corruptions, the bridge in
place, grouped-query attention) runs on a model that actually learned the task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cure_core.model.lm_config import causal_lm_config
from cure_core.settings import Seed

if TYPE_CHECKING:  # transformers is imported when a config is built, not when the CLI parses --recipe
    from transformers import PretrainedConfig

RECIPES = ("item", "text")
"""The recipes trained here: ``item`` (the default item-token model) and ``text``."""
RecipeName = Literal["item", "text"]
PAD_ID, EOS_ID = 1, 0  # the ids train_tokenizer gives its special tokens


class TextRecipe(BaseModel):
    """Settings of the text-mode recommender trained here (all part of its cache key)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["text"] = "text"
    arch: Literal["gpt2", "llama"] = "gpt2"
    profile: Literal["compact", "e2urec"] = Field(
        "compact", description="shipped prompt profile the model reads (both write the user)"
    )
    vocab_size: int = Field(8000, ge=300, le=65536, description="BPE vocabulary size asked of the tokenizer trainer")
    tokenizer_prompts: int = Field(
        20000, ge=100, description="training prompts (a seeded draw) the byte-level BPE tokenizer is trained on"
    )
    n_layer: int = Field(4, ge=1, le=24)
    n_head: int = Field(4, ge=1, le=32)
    n_kv_head: int | None = Field(
        None, ge=1, description="llama: key/value heads (grouped-query attention); default n_head"
    )
    d_model: int = Field(128, ge=16)
    d_mlp: int = Field(512, ge=16)
    dropout: float = Field(0.1, ge=0, lt=1)
    user_dropout: float = Field(
        0.1, ge=0, lt=1, description="share of training prompts written for 'a new user' instead of the user's id"
    )
    rating_loss: float = Field(
        1.0,
        ge=0,
        description=(
            "weight of the next-token loss on the history's rating words (the tokens that tell a liked entry from "
            "a disliked one), added to the answer loss; 0 = answer only"
        ),
    )
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.1, ge=0)
    batch_size: int = Field(64, ge=1)
    max_steps: int = Field(1300, ge=1, description="optimizer steps at most (the cosine schedule spans them)")
    eval_every: int = Field(260, ge=1, description="steps between validation checks")
    eval_samples: int = Field(2000, ge=100, description="validation samples (a seeded draw) checked each time")
    patience: int = Field(3, ge=1, description="checks without a better validation AUC before stopping")
    train_precision: Literal["fp32", "bf16-mixed"] = "bf16-mixed"
    seed: Seed = 0

    @model_validator(mode="after")
    def _heads_fit(self) -> TextRecipe:
        if self.d_model % self.n_head:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_head {self.n_head}")
        if self.n_kv_head is not None and (self.arch != "llama" or self.n_head % self.n_kv_head):
            raise ValueError("n_kv_head needs arch 'llama' and must divide n_head")
        return self

    def cache_spec(self) -> dict[str, object]:
        return self.model_dump()

    def hf_config(self, vocab_size: int, n_positions: int) -> PretrainedConfig:
        """The Hugging Face config (pre-LayerNorm; tied embeddings; pad id 1, EOS id 0)."""
        return causal_lm_config(
            self.arch,
            vocab_size=vocab_size,
            n_positions=n_positions,
            n_layer=self.n_layer,
            n_head=self.n_head,
            d_model=self.d_model,
            d_mlp=self.d_mlp,
            dropout=self.dropout,
            attention_dropout=0.0,
            n_kv_head=self.n_kv_head,
            eos_id=EOS_ID,
            pad_id=PAD_ID,
        )
