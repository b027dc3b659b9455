"""The recipes of the models trained here — architecture and optimisation settings, part of
every model's key: :class:`Recipe` for the item-token model (the default), :class:`TextRecipe`
for the text model (``--recipe text``): a GPT-2- or Llama-architecture LM with a byte-level BPE
tokenizer trained on its own training prompts, reading a shipped profile (``compact`` by
default, user id included so that a user can be memorised)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cure_core.legacy import LATER_FIELDS_AS_BEFORE, item_recipe_key_spec
from cure_core.model.lm_config import causal_lm_config
from cure_core.settings import Seed, json_object, validated

if TYPE_CHECKING:  # transformers is imported when a config is built, not when the CLI parses --recipe
    from transformers import PretrainedConfig


class CausalLMRecipe(BaseModel):
    """What both recipes share: their shape's checks and the Hugging Face config built from it
    (a subclass adds its own config options in :meth:`config_options`)."""

    model_config = ConfigDict(extra="forbid")
    name: ClassVar[str]
    """The recipe's name in ``--recipe`` (:data:`RECIPES`); not a field, so not in cache keys."""

    @model_validator(mode="after")
    def _heads_divide_width(self) -> CausalLMRecipe:
        if self.d_model % self.n_head:  # type: ignore[attr-defined]
            raise ValueError(f"d_model {self.d_model} is not divisible by n_head {self.n_head}")  # type: ignore[attr-defined]
        return self

    def config_options(self) -> dict[str, object]:
        """The :func:`~cure_core.model.lm_config.causal_lm_config` options beyond the shape."""
        return {}

    def hf_config(self, vocab_size: int, n_positions: int) -> PretrainedConfig:
        """The Hugging Face config of this architecture (pre-LayerNorm, tied embeddings)."""
        fields = ("n_layer", "n_head", "d_model", "d_mlp", "dropout")
        return causal_lm_config(
            self.arch,  # type: ignore[attr-defined]
            vocab_size=vocab_size,
            n_positions=n_positions,
            **{name: getattr(self, name) for name in fields},
            **self.config_options(),
        )


class Recipe(CausalLMRecipe):
    """Settings of a from-scratch item-mode recommender. Defaults are the project's default model."""

    name: ClassVar[str] = "item"

    arch: Literal["gpt2", "llama"] = "gpt2"
    n_layer: int = Field(4, ge=1, le=24)
    n_head: int = Field(4, ge=1, le=32)
    d_model: int = Field(32, ge=8)
    d_mlp: int = Field(128, ge=8)
    activation: Literal["gelu_new", "gelu_pytorch_tanh"] = Field(
        "gelu_pytorch_tanh",
        description=(
            "GPT-2's MLP activation: the same tanh-approximated GELU, as a Python formula (gelu_new) or one "
            "fused kernel (~1.2x faster on CPU); Llama uses SiLU"
        ),
    )
    dropout: float = Field(0.1, ge=0, lt=1)
    user_dropout: float = Field(
        0.1, ge=0, lt=1, description="share of training prompts whose user token is replaced by <unk_user>"
    )
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(0.1, ge=0)
    batch_size: int = Field(128, ge=1)
    train_precision: Literal["fp32", "bf16-mixed"] = Field(
        "bf16-mixed",
        description=(
            "training matmuls under bfloat16 autocast (weights, optimizer, evaluation and the saved model stay "
            "float32); ~1.8x faster on CPUs with AVX512-BF16/AMX"
        ),
    )
    max_epochs: int = Field(8, ge=1)
    ema_decay: float = Field(
        0.999,
        ge=0,
        lt=1,
        description=(
            "exponential moving average of the weights, evaluated and saved instead of the raw weights (0 = off)"
        ),
    )
    patience: int = Field(3, ge=1, description="epochs without a better validation AUC before stopping")
    seed: Seed = 0

    def cache_spec(self) -> dict[str, object]:
        """The recipe as it enters model cache keys (fields added or removed since models were
        cached enter as :func:`~cure_core.legacy.item_recipe_key_spec` says)."""
        return item_recipe_key_spec(self.model_dump())

    def config_options(self) -> dict[str, object]:
        """Attention dropout as the residual's; no grouped-query attention."""
        return {"attention_dropout": self.dropout, "activation": self.activation}


RECIPES = ("item", "text")
"""The recipes trained here: ``item`` (the default item-token model) and ``text``."""
RecipeName = Literal["item", "text"]
PAD_ID, EOS_ID = 1, 0  # the ids train_tokenizer gives its special tokens


class TextRecipe(CausalLMRecipe):
    """Settings of the text-mode recommender trained here (all part of its cache key)."""

    name: ClassVar[str] = "text"
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
    def _kv_heads_fit(self) -> TextRecipe:
        if self.n_kv_head is not None and (self.arch != "llama" or self.n_head % self.n_kv_head):
            raise ValueError("n_kv_head needs arch 'llama' and must divide n_head")
        return self

    def cache_spec(self) -> dict[str, object]:
        return self.model_dump()

    def config_options(self) -> dict[str, object]:
        """No attention dropout; ``n_kv_head`` key/value heads; pad id 1, EOS id 0."""
        return {"attention_dropout": 0.0, "n_kv_head": self.n_kv_head, "eos_id": EOS_ID, "pad_id": PAD_ID}


#: The first default recipe (d_model 128; cache key ``original-ml-100k-11cf918927`` on ML-100K), kept
#: so its cached models and results stay reachable: ``cure ... --recipe-json`` with these fields.
RECIPE_V1_OVERRIDES: dict[str, object] = {
    "d_model": 128,
    "d_mlp": 512,
    "dropout": 0.2,
    "max_epochs": 4,
    **LATER_FIELDS_AS_BEFORE,
}


def recipe_from_json(text: str | None, kind: str | None = None) -> Recipe | TextRecipe | None:
    """A recipe from JSON overrides of a default (``None`` or empty: the default item recipe).

    ``kind`` ``"text"`` (``--recipe text``), a JSON object with ``"kind": "text"``, or the bare
    word ``text`` (how ``CURE_RECIPE`` names it) select the text recipe; its overrides are then
    text-recipe fields.
    """
    if text and text.strip() in RECIPES:
        kind, text = text.strip(), None
    values = json_object(text, "--recipe-json") if text else {}
    if kind == "text" or values.get("kind") == "text":
        return validated(
            TextRecipe,
            {**values, "kind": "text"},
            "text recipe",
            'give a JSON object of text-recipe fields, e.g. {"n_layer": 2, "max_steps": 500}',
        )
    if not values:
        return None
    return validated(
        Recipe, values, "recipe", 'give a JSON object of recipe fields, e.g. {"n_layer": 2, "d_model": 32}'
    )
