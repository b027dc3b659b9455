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
    ``_original_component``, so putting each back gives the plain model an adapter can wrap, a
    saved adapter can be loaded onto, and a full-weight run trains and saves with
    ``save_pretrained`` (a wrapped copy would hold each weight under several names). The bridge
    also gives a bias-free unembedding a zero ``bias`` buffer (its ``b_U``); the copy drops it,
    so its state dict is the architecture's. On a model no bridge has wrapped (an item model)
    it is a deep copy.
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
        _drop_zero_bias_buffer(inner)
        if inner is not child:
            setattr(module, name, inner)


def _drop_zero_bias_buffer(module: torch.nn.Module) -> None:
    """A linear layer's ``bias`` buffer (not parameter) back to no bias; it must be zero."""
    bias = module._buffers.get("bias")
    if not isinstance(module, torch.nn.Linear) or bias is None:
        return
    if bias.any():
        raise ValueError("a bridge folded a non-zero bias into a linear layer that has none; it cannot be saved")
    del module._buffers["bias"]
    module.register_parameter("bias", None)


def merged_copy(peft_model: PeftModel) -> PreTrainedModel:
    """A plain HF model with the adapter merged into its weights; ``peft_model`` is left as is
    (the merge runs on a deep copy), so the run's model stays usable."""
    return copy.deepcopy(peft_model).merge_and_unload().eval()
