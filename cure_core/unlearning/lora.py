"""LoRA unlearning (text-mode.md §4): a new adapter on a copy of the model, CURE's group rules on
its factors, and the adapter saved or merged.

With ``UnlearnConfig.lora`` the run trains only a fresh LoRA adapter (``peft``) wrapped around a
plain copy of the original; the base weights stay frozen and bit-identical, and the references
(NPO's π_ref, the retain KL, E2URec's teacher) are the same network with the adapter disabled, so a
7B run holds no second model for them.

CURE's per-group rules act on the effective update ΔW = (α/r)·B·A of each wrapped layer, whose
base weight W is ``[out, in]`` (GPT-2's Conv1D stores ``[in, out]``, hence ``fan_in_fan_out``). A
group's module slices of W (``cure_core.modules``) are whole output rows (q, k, v per head; k, v
per key/value head under grouped-query attention; GPT-2's fused ``c_attn``), whole input columns
(the output projection per head) or the whole weight (an MLP):

- rows: those rows of ``lora_B`` belong to the group, and ``lora_A`` is a factor every head of
  the layer shares: task-shared when some slice of the layer is updated, frozen otherwise;
- columns: those columns of ``lora_A`` belong to the group and ``lora_B`` is the shared factor.
  ``lora_A`` starts random, so its columns that no *updated* group owns are zeroed at setup (and
  stay frozen): otherwise a changing ``lora_B`` would change those columns of B·A;
- whole: both factors belong to the group.

``lora_B`` starts at zero, so frozen rows of it stay zero and ΔW is zero outside the updated
groups' slices, exactly. Embedding rows (``u:``/``i:``) are no LoRA target: a LoRA run leaves them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from transformers import PreTrainedModel

from cure_core.checkpoints.adapters import peft_quietly
from cure_core.checkpoints.copies import plain_copy
from cure_core.errors import CureError
from cure_core.groups import ModuleGroups
from cure_core.modules import attention_shape, parameter_mask, parameter_names
from cure_core.unlearning.methods import GroupMasks, UnlearnConfig

if TYPE_CHECKING:  # peft is imported when a LoRA run starts, not with the runner
    from peft import PeftModel

ADAPTER = "default"
GPT2_TARGETS = ("c_attn", "c_proj", "c_fc")  # c_proj: the attention's and the MLP's
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
GROUP_KEYS = (("forget", "forget-specific"), ("retain", "retain-specific"), ("shared", "task-shared"))


def default_targets(model: PreTrainedModel) -> list[str]:
    """Every attention and MLP projection of the architecture (module name suffixes)."""
    return list(GPT2_TARGETS if attention_shape(model).arch == "gpt2" else PROJECTIONS)


def resolve_targets(model: PreTrainedModel, targets: Sequence[str]) -> list[str]:
    """``targets`` checked against the architecture's projections; empty: all of them."""
    valid = default_targets(model)
    unknown = [t for t in targets if t not in valid]
    if unknown:
        raise CureError(
            f"LoRA target(s) {', '.join(unknown)} are not projections of this {attention_shape(model).arch} model",
            f"use some of {', '.join(valid)} (or none: all of them)",
        )
    return list(dict.fromkeys(targets)) or valid


def check_config(config: UnlearnConfig, needs_groups: bool) -> None:
    """Refuse settings a LoRA run cannot honour, before anything is copied."""
    if config.lora and needs_groups and config.row_rule == "reset":
        raise CureError(
            "--row-rule reset writes the embedding rows of the base model, which a LoRA run never changes",
            "leave out --lora to reset rows, or use --row-rule update (with --lora, embedding rows stay as they are)",
        )


def wrap(model: PreTrainedModel, config: UnlearnConfig) -> PeftModel:
    """A plain copy of ``model`` wrapped in a fresh LoRA adapter; only ``lora_A``/``lora_B`` train."""
    from peft import LoraConfig, get_peft_model

    targets = resolve_targets(model, config.lora_targets)
    lora_config = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        target_modules=targets,
        lora_dropout=0.0,
        bias="none",
        fan_in_fan_out=attention_shape(model).arch == "gpt2",  # Conv1D weights are [in, out]
    )
    with peft_quietly():
        peft_model = get_peft_model(plain_copy(model), lora_config)
    return peft_model.eval()


def load_saved(model: PreTrainedModel, folder: Path) -> PeftModel:
    """A plain copy of ``model`` with the unlearning adapter a LoRA run saved in ``folder``."""
    from peft import PeftModel

    with peft_quietly():
        peft_model = PeftModel.from_pretrained(plain_copy(model), folder)
    return peft_model.eval()


def trainable(peft_model: PeftModel) -> list[torch.nn.Parameter]:
    """The adapter's parameters (every ``lora_A`` and ``lora_B``), in the model's order."""
    return [p for p in peft_model.parameters() if p.requires_grad]


def lora_layers(peft_model: PeftModel) -> dict[str, torch.nn.Module]:
    """``{module name in the plain model: LoRA layer}`` of every wrapped projection."""
    from peft.tuners.lora import LoraLayer

    return {name: m for name, m in peft_model.get_base_model().named_modules() if isinstance(m, LoraLayer)}


def group_rules(
    peft_model: PeftModel, reference: PreTrainedModel, groups: ModuleGroups, config: UnlearnConfig
) -> tuple[GroupMasks, dict[str, int]]:
    """The group masks over the adapter's parameters (flat, in :func:`trainable`'s order) and the
    number of modules in each group, by the slice rules of the module docstring.

    ``reference`` is any model of the same architecture (the original, bridged or not) on which
    the module slices are resolved. Zeroes the columns of ``lora_A`` that no updated group owns
    (retain-specific counts as updated only with ``retain_rule == "retain_update"``).
    """
    updated = {"forget", "shared"} | ({"retain"} if config.retain_rule == "retain_update" else set())
    members = {key: [m for m in groups.members(group) if not m.startswith(("u:", "i:"))] for key, group in GROUP_KEYS}
    layers = lora_layers(peft_model)
    names = parameter_names(reference)
    weights = {name: names[f"{name}.weight"] for name in layers}
    owned = {key: parameter_mask(reference, mods, only=set(weights.values())) for key, mods in members.items()}
    per_param: dict[int, dict[str, torch.Tensor]] = {}
    for name, layer in layers.items():
        a, b = layer.lora_A[ADAPTER].weight, layer.lora_B[ADAPTER].weight
        slices = {key: owned[key][weights[name]] for key in owned}
        if layer.fan_in_fan_out:
            slices = {key: m.T for key, m in slices.items()}
        a_masks, b_masks, frozen_columns = _layer_rules(name, slices, a.shape, b.shape, updated)
        with torch.no_grad():
            a[:, frozen_columns.to(a.device)] = 0
        per_param[id(a)], per_param[id(b)] = a_masks, b_masks
    params = trainable(peft_model)
    flat = {key: torch.cat([per_param[id(p)][key].reshape(-1).to(p.device) for p in params]) for key, _ in GROUP_KEYS}
    return GroupMasks(**flat), {group: len(members[key]) for key, group in GROUP_KEYS}


def _layer_rules(
    name: str, slices: dict[str, torch.Tensor], a_shape: torch.Size, b_shape: torch.Size, updated: set[str]
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor]:
    """One wrapped layer: ``{group: mask over lora_A}``, ``{group: mask over lora_B}`` and the
    lora_A columns to zero, from each group's slice of the base weight (``[out, in]``)."""
    device = next(iter(slices.values())).device
    a_masks = {key: torch.zeros(a_shape, dtype=torch.bool, device=device) for key in slices}
    b_masks = {key: torch.zeros(b_shape, dtype=torch.bool, device=device) for key in slices}
    kept_columns = torch.zeros(a_shape[1], dtype=torch.bool, device=device)
    by_rows = by_columns = layer_updated = False
    for key, owned in slices.items():
        if not owned.any():
            continue
        layer_updated |= key in updated
        rows, columns = owned.all(1), owned.all(0)
        if rows.all():  # the whole weight: an MLP, or every head of the projection in this group
            a_masks[key][:] = True
            b_masks[key][:] = True
        elif torch.equal(owned, rows[:, None].expand_as(owned)):
            b_masks[key][rows] = True
            by_rows = True
        elif torch.equal(owned, columns[None, :].expand_as(owned)):
            a_masks[key][:, columns] = True
            by_columns = True
            if key in updated:
                kept_columns |= columns
        else:
            raise ValueError(f"the module slices of {name} are neither whole rows nor whole columns")
    if by_rows and by_columns:
        raise ValueError(f"the module slices of {name} split both its rows and its columns")
    if layer_updated and by_rows:
        a_masks["shared"][:] = True  # lora_A of q/k/v: read by every head's rows of lora_B
    if layer_updated and by_columns:
        b_masks["shared"][:] = True  # lora_B of the output projection: writes every head's columns
    return a_masks, b_masks, (~kept_columns if by_columns else torch.zeros_like(kept_columns))


def save_adapter(peft_model: PeftModel, folder: Path) -> Path:
    """Write the adapter as peft does (``adapter_config.json``, ``adapter_model.safetensors``;
    peft adds a README model card), loadable with ``PeftModel.from_pretrained`` or ``--adapter``."""
    folder = Path(folder)
    peft_model.save_pretrained(str(folder), safe_serialization=True)
    return folder
