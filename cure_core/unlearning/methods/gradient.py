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
from cure_core.unlearning.methods.arguments import GradDiffArguments, NPOArguments, RetainArguments, RetainKind
from cure_core.unlearning.methods.base import Batch, UnlearnMethod

if TYPE_CHECKING:
    from cure_core.unlearning.methods.base import GroupMasks


class GradientAscent(UnlearnMethod):
    name = "ga"
    label = "Gradient ascent"
    help = "−NLL on the forget set (gradient ascent); no retain term"
    strengths = (1e-5, 3e-5, 1e-4)
    forget = "ga"


class GradDiff(GradientAscent):
    name = "graddiff"
    label = "GradDiff"
    help = "−NLL on the forget set + α · retain loss (NLL, or KL to the original with --retain-loss kl)"
    strengths = (3e-5, 1e-4, 3e-4)
    arguments = GradDiffArguments
    args: GradDiffArguments

    def retain_kind(self) -> RetainKind:
        """Which retain objective the run uses."""
        return self.args.retain_loss

    def retain_objective(self, batch: Batch, answer_ids: tuple[int, int]) -> torch.Tensor | None:
        if self.args.retain_weight == 0:
            return None
        if self.retain_kind() == "kl":
            return objectives.kl_to(batch.logits, batch.reference, answer_ids)
        return objectives.nll(batch.logits, batch.answers)

    def direction(self, g_f: torch.Tensor, g_r: torch.Tensor, masks: GroupMasks | None) -> torch.Tensor:
        return g_f + self.args.retain_weight * g_r


class NPO(GradDiff):
    name = "npo"
    label = "NPO"
    help = "NPO (β = npo_beta) on the forget set + α · retain loss"
    arguments = NPOArguments
    forget = "npo"
    args: NPOArguments

    def forget_objective(self, batch: Batch, answer_ids: tuple[int, int]) -> torch.Tensor:
        if self.forget_kind() == "npo":
            return objectives.npo(batch.logits, batch.reference, batch.answers, self.args.npo_beta)
        return super().forget_objective(batch, answer_ids)


class E2URec(GradDiff):
    name = "e2urec"
    label = "E2URec-style distillation"
    help = (
        "KL to a forgetting teacher (the original reading forgotten users as <unk_user>) + α · KL to the "
        "original on retain"
    )
    strengths = (3e-4, 1e-3, 3e-3)
    arguments = RetainArguments
    forget = "teacher"
    args: RetainArguments  # no retain_loss: E2URec's retain loss is always KL

    def retain_kind(self) -> RetainKind:
        return "kl"
