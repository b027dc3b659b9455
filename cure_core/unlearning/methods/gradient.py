"""Methods that add a retain term to a fixed forget objective: GA, GradDiff, NPO, E2URec-style.

E2URec-style is an approximation, stated plainly: E2URec trains LoRA adapters against a
forgetting teacher trained separately; here the full model is distilled, and the teacher for a
forgotten user is the original model reading that user as ``<unk_user>`` (exactly the view
Retrain has of them). For item and interaction requests, which have no such view, the teacher
is the uniform Yes/No answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from cure_core.unlearning import objectives
from cure_core.unlearning.methods.base import Batch, ForgetKind, UnlearnMethod

if TYPE_CHECKING:
    from cure_core.unlearning.methods.config import UnlearnConfig


class GradientAscent(UnlearnMethod):
    name = "ga"
    label = "Gradient ascent"
    help = "−NLL on the forget set (gradient ascent); no retain term"
    strengths = (1e-5, 3e-5, 1e-4)

    def forget_kind(self, config: UnlearnConfig) -> ForgetKind:
        return "ga"


class GradDiff(GradientAscent):
    name = "graddiff"
    label = "GradDiff"
    help = "−NLL on the forget set + α · retain loss (NLL, or KL to the original with --retain-loss kl)"
    strengths = (3e-5, 1e-4, 3e-4)

    def retain_objective(self, config: UnlearnConfig, batch: Batch, answer_ids: tuple[int, int]) -> torch.Tensor | None:
        if config.retain_weight == 0:
            return None
        if config.retain_loss == "kl":
            return objectives.kl_to(batch.logits, batch.reference, answer_ids)
        return objectives.nll(batch.logits, batch.answers)


class NPO(GradDiff):
    name = "npo"
    label = "NPO"
    help = "NPO (β = npo_beta) on the forget set + α · retain loss"
    strengths = (3e-5, 1e-4, 3e-4)

    def forget_kind(self, config: UnlearnConfig) -> ForgetKind:
        return "npo"


class E2URec(GradDiff):
    name = "e2urec"
    label = "E2URec-style distillation"
    help = (
        "KL to a forgetting teacher (the original reading forgotten users as <unk_user>) + α · KL to the "
        "original on retain"
    )
    strengths = (3e-4, 1e-3, 3e-3)

    def forget_kind(self, config: UnlearnConfig) -> ForgetKind:
        return "teacher"

    def retain_objective(self, config: UnlearnConfig, batch: Batch, answer_ids: tuple[int, int]) -> torch.Tensor | None:
        if config.retain_weight == 0:
            return None
        return objectives.kl_to(batch.logits, batch.reference, answer_ids)
