"""PEFT LoRA adapters: read, checked against the model, and merged for analysis.

An adapter folder is what ``PeftModel.save_pretrained`` writes: ``adapter_config.json`` and
``adapter_model.safetensors`` — or, from peft 0.3-era recipes such as TALLRec,
``adapter_model.bin``, read with ``torch.load(weights_only=True)`` (tensors only, never code).
The adapter is merged into the weights (``merge_and_unload``) because TransformerLens knows
nothing of PEFT. Refused, each with a one-line ``CureError``: an adapter that is not LoRA, one
whose ``lora_B`` tensors are all zero (peft versions that saved an empty adapter,
tloen/alpaca-lora #446), and one made for another base model (modules or tensor shapes that
do not fit, or a ``base_model_name_or_path`` folder whose config differs from the model's).
"""

from __future__ import annotations

import json
import pickle
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from transformers import PreTrainedModel

from cure_core.errors import CureError


@contextmanager
def peft_quietly() -> Iterator[None]:
    """Silence the FutureWarning that peft's wrappers trigger by reading transformers' deprecated
    ``is_gradient_checkpointing`` (once per wrapped or loaded model; nothing the user can act on)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


CONFIG, SAFETENSORS, LEGACY_BIN = "adapter_config.json", "adapter_model.safetensors", "adapter_model.bin"
# Config fields that fix the shapes a LoRA was trained for.
SHAPE_FIELDS = (
    "model_type",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "vocab_size",
)


@dataclass(frozen=True)
class AdapterInfo:
    """What was merged: the model card and ``--json`` outputs show it."""

    path: str
    weights_file: str
    r: int
    alpha: float
    target_modules: list[str]
    base_model_name_or_path: str | None
    n_tensors: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_adapter(folder: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], str]:
    """The adapter's config, its tensors and the name of the file they came from."""
    if not folder.is_dir() or not (folder / CONFIG).is_file():
        raise CureError(
            f"no {CONFIG} in {folder}",
            "give the folder PeftModel.save_pretrained wrote (adapter_config.json + adapter_model.safetensors)",
        )
    try:
        config = json.loads((folder / CONFIG).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CureError(
            f"{folder / CONFIG} is not valid JSON ({err})", "re-save the adapter with PeftModel.save_pretrained"
        ) from None
    if str(config.get("peft_type", "")).upper() != "LORA":
        raise CureError(
            f"the adapter in {folder} is {config.get('peft_type')!r}, not LoRA",
            "give a LoRA adapter (peft_type LORA), or merge the adapter yourself and pass the merged model alone",
        )
    try:
        if (folder / SAFETENSORS).is_file():
            return config, load_file(folder / SAFETENSORS), SAFETENSORS
        if (folder / LEGACY_BIN).is_file():
            return config, torch.load(folder / LEGACY_BIN, map_location="cpu", weights_only=True), LEGACY_BIN
    except (SafetensorError, pickle.UnpicklingError, RuntimeError, EOFError, OSError) as err:
        reason = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
        raise CureError(
            f"cannot read the adapter weights in {folder} ({reason})",
            "re-save the adapter with PeftModel.save_pretrained (safetensors); a .bin is only read if it "
            "holds tensors alone",
        ) from None
    raise CureError(
        f"{folder} has {CONFIG} but no {SAFETENSORS} or {LEGACY_BIN}",
        "copy the adapter's weight file next to its config",
    )


def check_not_empty(folder: Path, tensors: dict[str, torch.Tensor]) -> None:
    """An adapter whose ``lora_B`` are all zero changes nothing: a failed save, not a model."""
    lora_b = [t for name, t in tensors.items() if "lora_B" in name]
    if not lora_b or all(not torch.any(t) for t in lora_b):
        what = "no lora_B tensors" if not lora_b else f"all {len(lora_b)} lora_B tensors are zero"
        raise CureError(
            f"the adapter in {folder} is empty ({what}): it would leave the model unchanged (the peft "
            "empty-save bug, alpaca-lora #446)",
            "re-save the adapter from the trained PeftModel with a current peft (get_peft_model_state_dict "
            "after training), then check its size",
        )


def check_base(folder: Path, config: dict[str, Any], model: PreTrainedModel) -> None:
    """If the adapter names its base as a local folder, that folder's config must fit the model's."""
    base = config.get("base_model_name_or_path")
    base_config = Path(base).expanduser() / "config.json" if base else None
    if base_config is None or not base_config.is_file():
        return  # a hub id or a moved folder: the modules and tensor shapes are checked on merge
    theirs = json.loads(base_config.read_text())
    ours = model.config.to_dict()
    differ = [f for f in SHAPE_FIELDS if f in theirs and f in ours and theirs[f] != ours[f]]
    if differ:
        shown = ", ".join(f"{f} {theirs[f]} vs {ours[f]}" for f in differ)
        raise CureError(
            f"the adapter in {folder} was made for {base}, whose config differs from this model's ({shown})",
            "give the base model the adapter was trained on (--model) or the matching adapter",
        )


def merge_adapter(model: PreTrainedModel, folder: Path) -> tuple[PreTrainedModel, AdapterInfo]:
    """``model`` with the LoRA in ``folder`` merged into its weights (``model`` is changed)."""
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict

    folder = Path(folder)
    config, tensors, weights_file = read_adapter(folder)
    check_not_empty(folder, tensors)
    check_base(folder, config, model)
    mismatch = f"the adapter in {folder} does not fit this model"
    fix = "give the base model the adapter was trained on (--model), or the adapter trained on this model"
    try:
        lora_config = LoraConfig.from_pretrained(str(folder))
        lora_config.inference_mode = True
        with peft_quietly(), warnings.catch_warnings():  # peft warns that the base name differs from the
            warnings.simplefilter("ignore", UserWarning)  # model's path, which is checked above
            peft_model = get_peft_model(model, lora_config)
        result = set_peft_model_state_dict(peft_model, tensors)
    except KeyError as err:  # peft looks up a modules_to_save tensor that the file lacks
        raise CureError(f"{mismatch}: the adapter's weights lack the tensor {err}", fix) from None
    except (ValueError, RuntimeError) as err:
        raise CureError(f"{mismatch} ({_telling_line(err)})", fix) from None
    unexpected = list(result.unexpected_keys)
    missing = [k for k in result.missing_keys if "lora_" in k]
    if unexpected or missing:
        example = (unexpected or missing)[0]
        raise CureError(
            f"{mismatch}: {len(unexpected)} adapter tensor(s) have no module here and {len(missing)} LoRA "
            f"module(s) get no tensor (e.g. {example})",
            fix,
        )
    merged = peft_model.merge_and_unload()
    info = AdapterInfo(
        path=str(folder),
        weights_file=weights_file,
        r=int(lora_config.r),
        alpha=float(lora_config.lora_alpha),
        target_modules=sorted(lora_config.target_modules)
        if not isinstance(lora_config.target_modules, str)
        else [lora_config.target_modules],
        base_model_name_or_path=config.get("base_model_name_or_path"),
        n_tensors=len(tensors),
    )
    return merged.eval(), info


def _telling_line(err: Exception) -> str:
    """The line of a load error that says what differs (torch puts a heading line first)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [type(err).__name__]
    telling = next((line for line in lines if "mismatch" in line), lines[0])
    return telling if len(telling) <= 400 else telling[:399] + "…"
