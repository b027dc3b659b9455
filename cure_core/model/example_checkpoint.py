"""A tiny random-weight Hugging Face checkpoint (and LoRA adapter) to try the text path on.

Writes what a user of a TALLRec-style recommender brings, at toy size and offline: a folder
from ``save_pretrained`` (``config.json``, ``model.safetensors``, tokenizer files) of a named
architecture, with a byte-level BPE tokenizer trained here on the dataset's titles, and
optionally a PEFT LoRA adapter folder with random, non-zero ``lora_B`` (a freshly initialised
LoRA has ``lora_B = 0`` and would change nothing)::

    python -m cure_core.model.example_checkpoint --arch qwen2 --out DIR [--adapter DIR] [--data PATH]

The weights are random: the model's recommendations mean nothing. It exists so every command
can be run, and tested, on the same code paths a real LLaMA / Qwen2 / GPT-2 checkpoint takes.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    LlamaConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

from cure_core.data.dataset import RatingsDataset
from cure_core.errors import CureError

EOS, PAD = "<|endoftext|>", "<|pad|>"
N_LAYERS, N_HEADS, N_KV_HEADS, D_MODEL, D_MLP, N_CTX = 2, 4, 2, 64, 128, 2048


def _gpt2(vocab: int) -> PretrainedConfig:
    return GPT2Config(
        vocab_size=vocab,
        n_positions=N_CTX,
        n_embd=D_MODEL,
        n_layer=N_LAYERS,
        n_head=N_HEADS,
        n_inner=D_MLP,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=1,
    )


def _llama(vocab: int) -> PretrainedConfig:
    return LlamaConfig(**_grouped_query_fields(vocab))


def _qwen2(vocab: int) -> PretrainedConfig:
    return Qwen2Config(**_grouped_query_fields(vocab), tie_word_embeddings=True)


def _grouped_query_fields(vocab: int) -> dict[str, int]:
    """The config fields Llama and Qwen2 share (4 query heads reading 2 key/value heads)."""
    return {
        "vocab_size": vocab,
        "hidden_size": D_MODEL,
        "intermediate_size": D_MLP,
        "num_hidden_layers": N_LAYERS,
        "num_attention_heads": N_HEADS,
        "num_key_value_heads": N_KV_HEADS,
        "max_position_embeddings": N_CTX,
        "bos_token_id": 0,
        "eos_token_id": 0,
        "pad_token_id": 1,
    }


# Architecture -> (config builder, LoRA target modules as the usual recipes set them:
# TALLRec's q_proj/v_proj for Llama-style models, GPT-2's fused c_attn).
ARCHITECTURES: dict[str, tuple[Callable[[int], PretrainedConfig], list[str]]] = {
    "gpt2": (_gpt2, ["c_attn"]),
    "llama": (_llama, ["q_proj", "v_proj"]),
    "qwen2": (_qwen2, ["q_proj", "v_proj"]),
}


def train_tokenizer(texts: Iterable[str], vocab_size: int = 4000) -> PreTrainedTokenizerFast:
    """A GPT-2-style byte-level BPE (every string is writable) trained on ``texts``.

    ``<|endoftext|>`` is id 0 (BOS/EOS/UNK), ``<|pad|>`` id 1. Nothing is added around a
    prompt when it is encoded, as with GPT-2 and Qwen2 tokenizers.
    """
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=EOS, eos_token=EOS, unk_token=EOS, pad_token=PAD
    )


def tokenizer_corpus(dataset: RatingsDataset) -> list[str]:
    """The dataset's titles with years, and the shipped profiles' fixed wording and answers."""
    from cure_core.profiles import SHIPPED_PROFILES, load_profile

    texts = list(dataset.titles().values())
    for name in SHIPPED_PROFILES:
        profile = load_profile(name)
        texts += [profile.template, profile.yes, profile.no]
    return texts


def make_model(arch: str, vocab_size: int, seed: int = 0) -> PreTrainedModel:
    """A randomly initialised causal LM of ``arch`` (see ``ARCHITECTURES``) in eval mode."""
    if arch not in ARCHITECTURES:
        raise CureError(f"unknown example architecture {arch!r}", f"choose one of {', '.join(ARCHITECTURES)}")
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(ARCHITECTURES[arch][0](vocab_size))
    return model.eval()


def add_random_lora(model: PreTrainedModel, arch: str, base: str, seed: int = 0, r: int = 8, alpha: int = 16):
    """Wrap ``model`` in a PEFT LoRA (TALLRec's r = 8, α = 16) whose ``lora_B`` is random, not zero.

    ``base`` is recorded as the adapter's ``base_model_name_or_path``; ``get_peft_model``
    injects the LoRA layers into ``model`` itself.
    """
    from peft import LoraConfig, get_peft_model

    from cure_core.checkpoints.adapters import peft_quietly

    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=0.05,
        target_modules=ARCHITECTURES[arch][1],
        fan_in_fan_out=arch == "gpt2",
        task_type="CAUSAL_LM",
    )
    model.name_or_path = base  # get_peft_model records the model's name as the adapter's base
    with peft_quietly():
        peft_model = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
    return peft_model.eval()


def write_example(arch: str, out: Path, dataset: RatingsDataset, adapter: Path | None = None, seed: int = 0) -> None:
    """Write the model folder ``out`` and, if asked, the LoRA adapter folder ``adapter``."""
    out = Path(out).resolve()
    tokenizer = train_tokenizer(tokenizer_corpus(dataset))
    model = make_model(arch, len(tokenizer), seed)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    if adapter is not None:
        add_random_lora(model, arch, str(out), seed).save_pretrained(Path(adapter).resolve())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cure_core.model.example_checkpoint", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--arch",
        choices=list(ARCHITECTURES),
        default="qwen2",
        help="architecture (llama and qwen2 use grouped-query attention: 4 query heads, 2 key/value heads)",
    )
    parser.add_argument("--out", type=Path, required=True, help="folder to write the model and tokenizer to")
    parser.add_argument("--adapter", type=Path, help="also write a random non-zero LoRA adapter to this folder")
    parser.add_argument("--data", help="dataset whose titles train the tokenizer (default: MovieLens-100K)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from cure_core.data import load_dataset

    try:
        write_example(args.arch, args.out, load_dataset(args.data), args.adapter, args.seed)
    except CureError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        f"wrote a random-weight {args.arch} checkpoint to {args.out}"
        + (f" and a LoRA adapter to {args.adapter}" if args.adapter else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
