"""One registry of unlearning methods (method.md §7) behind one interface.

Every method turns a step's forget and retain batches into one update direction (a gradient
to descend, flat over all parameters); the runner (:mod:`cure_core.unlearning.runner`) feeds
it to Adam with learning rate = ``strength``. Each method reads the settings it needs from
:class:`UnlearnConfig`:

========== ============================================ ==============================================
method     forget objective (g_f)                       combination with retain (g_r)
========== ============================================ ==============================================
ga         −NLL (gradient ascent)                       none
graddiff   −NLL                                         g_f + α·g_r, retain NLL or KL to the original
npo        NPO, β                                       g_f + α·g_r (retain NLL)
e2urec     KL to a "forgetting teacher" (see below)     g_f + α·g_r, retain KL to the original
pcgrad     ``forget_loss`` (NPO, GA or teacher KL)      PCGrad over all parameters
sago       ``forget_loss``                              SAGO over all parameters
cure       ``forget_loss``                              per module group: forget-specific g_f;
                                                        retain-specific α·g_r or frozen; task-shared
                                                        PCGrad or SAGO; outside frozen; forget-
                                                        specific embedding rows updated or reset
========== ============================================ ==============================================

E2URec-style is an approximation, stated plainly: E2URec trains LoRA adapters against a
forgetting teacher trained separately; here the full model is distilled, and the teacher for a
forgotten user is the original model reading that user as ``<unk_user>`` (exactly the view
Retrain has of them). For item and interaction requests, which have no such view, the teacher
is the uniform Yes/No answer. The same teacher KL is available as ``forget_loss="teacher"`` for
PCGrad, SAGO and CURE-style, so the group rules can be compared with the objective held fixed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import BaseModel, Field

from cure_core.unlearning import objectives
from cure_core.unlearning.combine import COMBINERS, pcgrad, sago


class UnlearnConfig(BaseModel):
    """Every setting of a run (part of its id)."""

    method: str
    strength: float = Field(1e-3, gt=0, description="Adam learning rate of the update")
    steps: int = Field(60, ge=1, le=100_000)
    batch_size: int = Field(64, ge=1)
    seed: int = 0
    retain_weight: float = Field(1.0, ge=0, description="α: weight of the retain gradient")
    retain_loss: Literal["nll", "kl"] = "nll"
    forget_loss: Literal["npo", "ga", "teacher"] = Field("npo", description="forget objective of pcgrad, sago and cure")
    npo_beta: float = Field(0.1, gt=0)
    retain_rule: Literal["retain_update", "frozen"] = "retain_update"
    shared_rule: Literal["pcgrad", "sago"] = "pcgrad"
    row_rule: Literal["update", "reset"] = Field(
        "update", description="cure: forget-specific embedding rows take the forget update, or are reset once (user rows to <unk_user>, item rows to the mean item row) and then frozen"
    )
    probe_every: int = Field(10, ge=1)
    probe_size: int = Field(256, ge=8)


@dataclass
class Batch:
    """One step's model outputs at the answer position and what the objectives compare with."""

    logits: torch.Tensor  # [n, vocab], with grad
    answers: torch.Tensor  # [n] true answer token ids
    reference: torch.Tensor  # [n, vocab] original model, no grad
    teacher: torch.Tensor | None = None  # [n, vocab] forgetting teacher (forget batch, e2urec)


def forget_kind(config: UnlearnConfig) -> str:
    """``ga``, ``npo`` or ``teacher``: fixed by the method, or ``forget_loss`` for the
    methods that combine g_f with g_r."""
    fixed = {"ga": "ga", "graddiff": "ga", "npo": "npo", "e2urec": "teacher"}
    return fixed.get(config.method, config.forget_loss)


def forget_objective(config: UnlearnConfig, batch: Batch, answer_ids: tuple[int, int]) -> torch.Tensor:
    kind = forget_kind(config)
    if kind == "ga":
        return objectives.gradient_ascent(batch.logits, batch.answers)
    if kind == "teacher":
        assert batch.teacher is not None
        return objectives.kl_to(batch.logits, batch.teacher, answer_ids)
    return objectives.npo(batch.logits, batch.reference, batch.answers, config.npo_beta)


def needs_teacher(config: UnlearnConfig) -> bool:
    return forget_kind(config) == "teacher"


def retain_objective(config: UnlearnConfig, batch: Batch, answer_ids: tuple[int, int]) -> torch.Tensor | None:
    if config.method == "ga" or config.retain_weight == 0:
        return None
    if config.method == "e2urec" or config.retain_loss == "kl":
        return objectives.kl_to(batch.logits, batch.reference, answer_ids)
    return objectives.nll(batch.logits, batch.answers)


@dataclass
class GroupMasks:
    """Flat boolean masks over all parameters, one per group (disjoint)."""

    forget: torch.Tensor
    retain: torch.Tensor
    shared: torch.Tensor


Direction = Callable[[torch.Tensor, torch.Tensor, UnlearnConfig, GroupMasks | None], torch.Tensor]


def _sum(g_f: torch.Tensor, g_r: torch.Tensor, config: UnlearnConfig, masks: GroupMasks | None) -> torch.Tensor:
    return g_f + config.retain_weight * g_r


def _pcgrad(g_f: torch.Tensor, g_r: torch.Tensor, config: UnlearnConfig, masks: GroupMasks | None) -> torch.Tensor:
    return pcgrad(g_f, g_r, 1.0, config.retain_weight)


def _sago(g_f: torch.Tensor, g_r: torch.Tensor, config: UnlearnConfig, masks: GroupMasks | None) -> torch.Tensor:
    return sago(g_f, g_r, 1.0, config.retain_weight)


def _cure(g_f: torch.Tensor, g_r: torch.Tensor, config: UnlearnConfig, masks: GroupMasks | None) -> torch.Tensor:
    if masks is None:
        raise ValueError("CURE-style unlearning needs module groups")
    direction = torch.zeros_like(g_f)
    direction[masks.forget] = g_f[masks.forget]
    if config.retain_rule == "retain_update":
        direction[masks.retain] = config.retain_weight * g_r[masks.retain]
    if masks.shared.any():
        direction[masks.shared] = COMBINERS[config.shared_rule](g_f[masks.shared], g_r[masks.shared], 1.0, config.retain_weight)
    return direction


@dataclass(frozen=True)
class MethodSpec:
    name: str
    label: str
    direction: Direction
    needs_groups: bool = False
    circuit_groups: bool = True  # False: every head and MLP counts as task-shared (the ablation)


METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec("ga", "Gradient ascent", _sum),
        MethodSpec("graddiff", "GradDiff", _sum),
        MethodSpec("npo", "NPO", _sum),
        MethodSpec("e2urec", "E2URec-style distillation", _sum),
        MethodSpec("pcgrad", "PCGrad", _pcgrad),
        MethodSpec("sago", "SAGO", _sago),
        MethodSpec("cure", "CURE-style (per-group rules)", _cure, needs_groups=True),
        MethodSpec("cure-nocircuit", "CURE-style without circuits (ablation: every head/MLP task-shared)", _cure, needs_groups=True, circuit_groups=False),
    )
}
