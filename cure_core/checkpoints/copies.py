"""Copies of a user's model that TransformerLens or peft has wrapped: a plain one (the bridge's
components taken out) and one with a LoRA adapter merged. Neither changes the model copied."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
from transformers import PreTrainedModel

if TYPE_CHECKING:  # peft is imported when a LoRA run starts
    from peft import PeftModel

_WRAPPER = "_original_component"


def plain_copy(model: PreTrainedModel) -> PreTrainedModel:
    """A deep copy of ``model`` with TransformerLens' bridge components taken out.

    Booting a bridge on a user's checkpoint replaces its submodules in place (GPT-2's attention
    then reads split q/k/v copies, not ``c_attn``); the original HF modules are kept inside as
    ``_original_component``, so putting each back gives the plain model an adapter can wrap and
    a saved adapter can be loaded onto.
    """
    plain = copy.deepcopy(model)
    _unwrap(plain)
    return plain


def _unwrap(module: torch.nn.Module) -> None:
    for name, child in list(module.named_children()):
        inner = child
        while isinstance(getattr(inner, _WRAPPER, None), torch.nn.Module):
            inner = getattr(inner, _WRAPPER)
        _unwrap(inner)
        if inner is not child:
            setattr(module, name, inner)


def merged_copy(peft_model: PeftModel) -> PreTrainedModel:
    """A plain HF model with the adapter merged into its weights; ``peft_model`` is left as is
    (the merge runs on a deep copy), so the run's model stays usable."""
    return copy.deepcopy(peft_model).merge_and_unload().eval()
