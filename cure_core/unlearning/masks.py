"""Module groups as flat parameter masks, and the reset of forget-specific embedding rows."""

from __future__ import annotations

from typing import Any

import torch

from cure_core.groups import ModuleGroups
from cure_core.modules import parameter_mask
from cure_core.prompts import UNK_USER
from cure_core.unlearning.methods import GroupMasks


def flat_mask(
    model: torch.nn.Module, modules: list[str], vocab_index: dict[str, int] | None, names: list[str]
) -> torch.Tensor:
    """The parameter entries of ``modules`` as one flat mask, in the order of ``names``."""
    masks = parameter_mask(model, modules, vocab_index)
    return torch.cat([masks[n].reshape(-1) for n in names])


def flat_group_masks(
    model: torch.nn.Module, groups: ModuleGroups, vocab_index: dict[str, int] | None, names: list[str]
) -> tuple[GroupMasks, dict[str, int]]:
    """One flat mask per group the methods update, and each group's number of members."""
    flat: dict[str, torch.Tensor] = {}
    sizes: dict[str, int] = {}
    for key, group in (("forget", "forget-specific"), ("retain", "retain-specific"), ("shared", "task-shared")):
        members = groups.members(group)
        flat[key] = flat_mask(model, members, vocab_index, names)
        sizes[group] = len(members)
    return GroupMasks(**flat), sizes


@torch.no_grad()
def reset_forget_rows(model: torch.nn.Module, groups: ModuleGroups, encoder: Any, names: list[str]) -> torch.Tensor:
    """Reset forget-specific embedding rows to what Retrain would read instead — a user row to
    the ``<unk_user>`` row, an item row to the mean item row — and return their flat mask.
    A text model's groups hold no rows (its words are shared by every user): nothing is reset."""
    rows = [m for m in groups.members("forget-specific") if m.startswith(("u:", "i:"))]
    if not rows:
        return torch.zeros(sum(p.numel() for p in model.parameters()), dtype=torch.bool)
    vocab = encoder.vocab
    weight = model.get_input_embeddings().weight
    item_rows = [i for t, i in vocab.index.items() if t.startswith("i:")]
    for module in rows:
        row = vocab.index[module]
        weight[row] = weight[vocab.index[UNK_USER]] if module.startswith("u:") else weight[item_rows].mean(0)
    return flat_mask(model, rows, vocab.index, names)
