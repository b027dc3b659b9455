"""The unlearning loop shared by every method: always on a copy of the original model.

Per step: a forget batch and a retain batch (seeded), the forget and retain objectives, their
gradients g_f and g_r as flat vectors, the method's direction, one Adam step (learning rate =
strength, no weight decay, so entries whose direction stays zero never move). The callback
gets live figures every step (losses, gradient cosine per group) and probe AUCs every
``probe_every`` steps. A non-finite or exploding loss stops the run with a clear error; the
original model is never touched.
"""

from __future__ import annotations

import copy
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from cure_core.data.samples import Samples
from cure_core.errors import CureError
from cure_core.groups import ModuleGroups
from cure_core.metrics import utility
from cure_core.model.recommender import Recommender
from cure_core.modules import parameter_mask
from cure_core.prompts import UNK_USER
from cure_core.requests import ForgetRequest, RequestSets
from cure_core.unlearning.combine import cosine
from cure_core.unlearning.methods import METHODS, Batch, GroupMasks, UnlearnConfig, forget_objective, needs_teacher, retain_objective

StepCallback = Callable[[dict[str, Any]], None]
MAX_LOSS = 1e4


class UnlearningDiverged(CureError):
    """The loss became NaN/inf or exploded; the run stopped and the original is intact."""


@dataclass
class UnlearnResult:
    model: Recommender
    config: UnlearnConfig
    history: list[dict[str, Any]]
    seconds: float
    params_updated: int
    params_total: int
    peak_memory_mib: float
    groups_used: dict[str, int] = field(default_factory=dict)


def _flat(grads: tuple[torch.Tensor | None, ...], params: list[torch.nn.Parameter]) -> torch.Tensor:
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params, strict=True)])


def _flat_mask(model: torch.nn.Module, modules: list[str], vocab_index: dict[str, int] | None, names: list[str]) -> torch.Tensor:
    """The parameter entries of ``modules`` as one flat mask, in the order of ``names``."""
    masks = parameter_mask(model, modules, vocab_index)
    return torch.cat([masks[n].reshape(-1) for n in names])


def _group_masks(model: torch.nn.Module, groups: ModuleGroups, vocab_index: dict[str, int] | None, names: list[str]) -> tuple[GroupMasks, dict[str, int]]:
    flat: dict[str, torch.Tensor] = {}
    sizes: dict[str, int] = {}
    for key, group in (("forget", "forget-specific"), ("retain", "retain-specific"), ("shared", "task-shared")):
        members = groups.members(group)
        flat[key] = _flat_mask(model, members, vocab_index, names)
        sizes[group] = len(members)
    return GroupMasks(**flat), sizes


@torch.no_grad()
def _reset_rows(model: torch.nn.Module, groups: ModuleGroups, encoder: Any, names: list[str]) -> torch.Tensor:
    """Reset forget-specific embedding rows to what Retrain would read instead — a user row to
    the ``<unk_user>`` row, an item row to the mean item row — and return their flat mask."""
    vocab = encoder.vocab
    weight = model.get_input_embeddings().weight
    item_rows = [i for t, i in vocab.index.items() if t.startswith("i:")]
    rows = [m for m in groups.members("forget-specific") if m.startswith(("u:", "i:"))]
    for module in rows:
        row = vocab.index[module]
        weight[row] = weight[vocab.index[UNK_USER]] if module.startswith("u:") else weight[item_rows].mean(0)
    return _flat_mask(model, rows, vocab.index, names)


def unlearn(
    original: Recommender,
    samples: Samples,
    sets: RequestSets,
    request: ForgetRequest,
    config: UnlearnConfig,
    groups: ModuleGroups | None = None,
    callback: StepCallback | None = None,
) -> UnlearnResult:
    """Run ``config.method`` on a copy of ``original``; see the module docstring. To cancel,
    raise from ``callback`` (a :class:`~cure_core.jobs.BackgroundJob`'s progress does)."""
    if config.method not in METHODS:
        raise CureError(f"unknown unlearning method {config.method!r}", f"use one of: {', '.join(METHODS)}")
    spec = METHODS[config.method]
    if spec.needs_groups and groups is None:
        raise CureError("CURE-style unlearning needs module groups", "compute them first (`cure groups`), or let `cure unlearn` do it")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = copy.deepcopy(original.model)
    model.eval()
    student = Recommender(model=model, encoder=original.encoder, known_users=original.known_users, meta={}, path=None)
    original.model.eval()
    answer_ids = (original.encoder.yes_id, original.encoder.no_id)
    answer_token = torch.tensor([original.encoder.no_id, original.encoder.yes_id])
    names = [n for n, _ in model.named_parameters()]
    params = [p for _, p in model.named_parameters()]
    for p in params:
        p.requires_grad_(True)
    vocab_index = getattr(getattr(original.encoder, "vocab", None), "index", None)
    if groups is not None and not spec.circuit_groups:
        groups = groups.without_circuits()
    masks, groups_used = _group_masks(model, groups, vocab_index, names) if spec.needs_groups and groups is not None else (None, {})
    if masks is not None and config.row_rule == "reset" and groups is not None:
        reset = _reset_rows(model, groups, original.encoder, names)
        masks.forget &= ~reset
        touched_by_reset = reset
    else:
        touched_by_reset = None
    if masks is not None and not (masks.forget.any() or masks.shared.any() or (touched_by_reset is not None and touched_by_reset.any())):
        raise CureError("the module groups leave nothing for the forget update (no forget-specific and no task-shared module)", "lower the group threshold or use another corruption (`cure groups --help`)")
    optimizer = torch.optim.Adam(params, lr=config.strength)
    probe_rng = np.random.default_rng(config.seed + 1)
    probes = {name: np.sort(probe_rng.choice(idx, size=min(config.probe_size, len(idx)), replace=False)) for name, idx in (("forget", sets.forget), ("test", sets.test)) if len(idx)}
    touched = touched_by_reset.clone() if touched_by_reset is not None else torch.zeros(sum(p.numel() for p in params), dtype=torch.bool)
    history: list[dict[str, Any]] = []
    start = time.perf_counter()

    def batch(idx: np.ndarray, teacher: bool) -> Batch:
        encoded = student.encode(samples, idx)
        logits = student.last_logits(encoded)
        with torch.no_grad():
            ref = original.last_logits(encoded)
            forced = None
            if teacher:
                forced = original.last_logits(original.encode(samples, idx, np.zeros(len(idx), dtype=bool))) if request.kind == "user" else torch.zeros_like(ref)
        return Batch(logits, answer_token[samples.label[idx]], ref, forced)

    for step in range(1, config.steps + 1):
        f_batch = batch(rng.choice(sets.forget, size=min(config.batch_size, len(sets.forget)), replace=False), needs_teacher(config))
        forget_loss = forget_objective(config, f_batch, answer_ids)
        g_f = _flat(torch.autograd.grad(forget_loss, params, allow_unused=True), params)
        r_batch = batch(rng.choice(sets.retain, size=min(config.batch_size, len(sets.retain)), replace=False), False)
        retain_loss = retain_objective(config, r_batch, answer_ids)
        g_r = _flat(torch.autograd.grad(retain_loss, params, allow_unused=True), params) if retain_loss is not None else torch.zeros_like(g_f)
        losses = [float(forget_loss.detach())] + ([float(retain_loss.detach())] if retain_loss is not None else [])
        if not all(np.isfinite(losses)) or max(abs(v) for v in losses) > MAX_LOSS:
            raise UnlearningDiverged(
                f"{spec.label} diverged at step {step} (forget loss {losses[0]:.3g}{f', retain loss {losses[1]:.3g}' if len(losses) > 1 else ''})",
                "lower --strength or --steps; the original model is unchanged",
            )
        direction = spec.direction(g_f, g_r, config, masks)
        touched |= direction != 0
        offset = 0
        for p in params:
            n = p.numel()
            p.grad = direction[offset : offset + n].view_as(p).clone()
            offset += n
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        row: dict[str, Any] = {"step": step, "forget_loss": losses[0], "retain_loss": losses[1] if len(losses) > 1 else None, "cos_all": cosine(g_f, g_r)}
        if masks is not None:
            for key, mask in (("forget", masks.forget), ("retain", masks.retain), ("shared", masks.shared)):
                row[f"cos_{key}"] = cosine(g_f[mask], g_r[mask]) if mask.any() else None
        if step % config.probe_every == 0 or step == config.steps:
            for name, idx in probes.items():
                row[f"{name}_auc"] = utility(samples.label[idx], student.predict(samples, idx))["auc"]
        history.append(row)
        if callback is not None:
            callback(row)
    seconds = time.perf_counter() - start
    for p in params:
        p.requires_grad_(False)
    peak = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return UnlearnResult(student, config, history, seconds, int(touched.sum()), int(touched.numel()), float(peak), groups_used)
