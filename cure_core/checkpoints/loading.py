"""Loading a user's Hugging Face checkpoint (optionally with a LoRA adapter) for analysis, offline.

A model folder is what ``save_pretrained`` writes: ``config.json``, ``*.safetensors`` (one
file or shards) and tokenizer files. Nothing is downloaded and nothing in the given folders is
written. Every refusal is a one-line ``CureError`` naming the problem and the fix.

Pickle-only weights (``pytorch_model.bin``, ``*.pt``) are refused rather than loaded: a full
model is large, pickles of whole modules (E2URec's ``model.pt``) need the code that made them,
and this project reads model weights only through safetensors. The error says how to convert
them once (transformers reads a ``.bin`` with ``torch.load(weights_only=True)``). A LoRA
adapter's ``adapter_model.bin`` is the exception: it is small, and read as tensors only
(``cure_core.checkpoints.adapters``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import torch
from safetensors import SafetensorError
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from cure_core.checkpoints.adapters import AdapterInfo, merge_adapter
from cure_core.errors import CureError

Dtype = Literal["fp32", "bf16"]
Device = Literal["auto", "cpu", "cuda"]
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16}
DEVICES: tuple[str, ...] = get_args(Device)
PICKLE_PATTERNS = ("pytorch_model*.bin", "*.pt", "*.pth", "*.ckpt")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "vocab.json",
    "spiece.model",
    "vocab.txt",
)
CAUSAL_LM_SUFFIXES = ("ForCausalLM", "LMHeadModel")


@dataclass(frozen=True)
class CheckpointInfo:
    """What was loaded, for the model card, logs and ``--json`` outputs."""

    path: str
    architecture: str
    model_type: str
    n_params: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_model: int
    vocab_size: int
    dtype: str
    device: str
    adapter: AdapterInfo | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LoadedCheckpoint:
    """A causal LM in eval mode (adapter merged), its tokenizer and what was loaded."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    info: CheckpointInfo


def resolve_device(device: str) -> torch.device:
    """``auto`` is CUDA when there is one, else the CPU; ``cuda`` without CUDA is an error."""
    if device not in DEVICES:
        raise CureError(f"unknown device {device!r}", f"use one of {', '.join(DEVICES)}")
    if device == "cuda" and not torch.cuda.is_available():
        raise CureError(
            "--device cuda was asked for but this machine has no CUDA GPU (or torch is a CPU build)",
            "use --device cpu (or auto), or run on a machine with a CUDA GPU and a CUDA build of torch",
        )
    return torch.device("cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu")


def load_checkpoint(
    model_path: str | Path, adapter_path: str | Path | None = None, dtype: str = "fp32", device: str = "auto"
) -> LoadedCheckpoint:
    """Load ``model_path`` (and merge ``adapter_path``) in ``dtype`` on ``device``, offline.

    The model is loaded with PyTorch's fused attention (SDPA: scoring 300-token prompts ran
    2.4x faster than eager attention here, logits equal to 5e-7); booting the TransformerLens
    bridge switches it to eager attention, which the bridge's hooks need.
    """
    folder = Path(model_path).expanduser()
    if dtype not in DTYPES:
        raise CureError(f"unknown dtype {dtype!r}", f"use one of {', '.join(DTYPES)}")
    target = resolve_device(device)
    config = _read_config(folder)
    _check_causal_lm(config, folder)
    architecture = bridge_architecture(config, folder)
    _check_weights(folder)
    _check_tokenizer_files(folder)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, TypeError) as err:
        raise CureError(
            f"cannot load a tokenizer from {folder} ({_first_line(err)})",
            "save the tokenizer the model was trained with into the folder (tokenizer.save_pretrained)",
        ) from None
    try:
        model, loading = AutoModelForCausalLM.from_pretrained(
            folder,
            config=config,
            dtype=DTYPES[dtype],
            use_safetensors=True,
            local_files_only=True,
            attn_implementation="sdpa",
            output_loading_info=True,
        )
    except SafetensorError as err:
        raise CureError(
            f"the weights in {folder} are damaged ({_first_line(err)})",
            "save the model again with save_pretrained, or copy the *.safetensors files whole",
        ) from None
    except (OSError, ValueError, RuntimeError) as err:
        raise CureError(
            f"cannot load the causal language model in {folder} ({_first_line(err)})",
            "the folder needs config.json and the *.safetensors that save_pretrained wrote for a causal LM",
        ) from None
    _check_coverage(folder, loading)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        raise CureError(
            f"the tokenizer in {folder} has {len(tokenizer)} tokens but the model only "
            f"{model.get_input_embeddings().num_embeddings} embeddings",
            "use the tokenizer the model was trained with",
        )
    adapter = None
    if adapter_path is not None:
        model, adapter = merge_adapter(model, Path(adapter_path).expanduser())
    model = model.to(target).eval()
    info = CheckpointInfo(
        path=str(folder),
        architecture=architecture,
        model_type=config.model_type,
        n_params=sum(p.numel() for p in model.parameters()),
        n_layers=_field(config, "num_hidden_layers", "n_layer"),
        n_heads=_field(config, "num_attention_heads", "n_head"),
        n_kv_heads=_field(config, "num_key_value_heads", "num_attention_heads", "n_head"),
        d_model=_field(config, "hidden_size", "n_embd"),
        vocab_size=model.get_input_embeddings().num_embeddings,
        dtype=dtype,
        device=str(target),
        adapter=adapter,
    )
    return LoadedCheckpoint(model=model, tokenizer=tokenizer, info=info)


def bridge_architecture(config: PretrainedConfig, folder: Path) -> str:
    """The TransformerLens 4.x architecture adapter the bridge would use for ``config``."""
    from transformer_lens.model_bridge.sources._hf_format import determine_architecture_from_hf_config

    try:
        return determine_architecture_from_hf_config(config)
    except ValueError:
        named = ", ".join(config.architectures or []) or config.model_type
        raise CureError(
            f"the model in {folder} ({named}) has an architecture TransformerLens' bridge does not support",
            "use a model of a supported architecture (GPT-2, Llama, Mistral, Qwen2/3, Gemma, Phi, ...)",
        ) from None


def _read_config(folder: Path) -> PretrainedConfig:
    if not (folder / "config.json").is_file():
        pickled = [p.name for pattern in PICKLE_PATTERNS for p in folder.glob(pattern)] if folder.is_dir() else []
        hint = f" (it holds {pickled[0]}: a pickled model needs the code that made it)" if pickled else ""
        raise CureError(
            f"no config.json in {folder}{hint}",
            "give a folder written by Hugging Face's save_pretrained (config.json, *.safetensors, tokenizer files)",
        )
    try:
        return AutoConfig.from_pretrained(folder, local_files_only=True)
    except (ValueError, KeyError, json.JSONDecodeError, OSError) as err:
        raise CureError(
            f"cannot read {folder / 'config.json'} ({_first_line(err)})",
            "the config must be one this version of transformers knows (check model_type)",
        ) from None


def _check_coverage(folder: Path, loading: dict[str, list]) -> None:
    """Refuse weights that do not cover the architecture exactly: a missing tensor would be
    initialised at random and an unexpected one dropped, and the model would run all the same."""
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        names = sorted(str(k[0] if isinstance(k, tuple) else k) for k in loading.get(kind) or [])
        if names:
            shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            what = {
                "missing_keys": "lack tensor(s) that the architecture in config.json needs",
                "unexpected_keys": "hold tensor(s) that the architecture in config.json does not have",
                "mismatched_keys": "hold tensor(s) of another shape than the architecture in config.json",
            }
            raise CureError(
                f"the weights in {folder} {what[kind]}: {shown}",
                "give the folder save_pretrained wrote for this model, its config.json and weights together",
            )


def _check_causal_lm(config: PretrainedConfig, folder: Path) -> None:
    named = [a for a in config.architectures or [] if not a.endswith(CAUSAL_LM_SUFFIXES)]
    if named:
        raise CureError(
            f"{folder / 'config.json'} names {named[0]}, not a causal language model",
            "give a causal LM (architectures like LlamaForCausalLM, GPT2LMHeadModel) with its own config.json",
        )


def _check_tokenizer_files(folder: Path) -> None:
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise CureError(
            f"{folder} has no tokenizer files ({', '.join(TOKENIZER_FILES[:3])}, ...)",
            "save the tokenizer the model was trained with into the folder (tokenizer.save_pretrained)",
        )


def _check_weights(folder: Path) -> None:
    if any(folder.glob("*.safetensors")):
        return
    pickled = [p.name for pattern in PICKLE_PATTERNS for p in folder.glob(pattern)]
    if pickled:
        raise CureError(
            f"{folder} holds only pickle weights ({pickled[0]}), which are not loaded",
            'convert them once: python -c "from transformers import AutoModelForCausalLM as M, '
            f"AutoTokenizer as T; p='{folder}'; M.from_pretrained(p, "
            "use_safetensors=False).save_pretrained(p + '-st'); T.from_pretrained(p).save_pretrained(p + "
            f"'-st')\" and pass {folder}-st",
        )
    raise CureError(
        f"{folder} has no *.safetensors weights", "save the model with save_pretrained, which writes model.safetensors"
    )


def _field(config: PretrainedConfig, *names: str) -> int:
    return int(next(getattr(config, n) for n in names if getattr(config, n, None) is not None))


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:200]
