"""Methods that resolve conflicts between g_f and g_r over all parameters: PCGrad and SAGO.

Their forget objective is ``forget_loss`` (NPO, GA or the teacher KL of E2URec-style), so the
combination rules can be compared with the objective held fixed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from cure_core.unlearning.combine import pcgrad, sago
from cure_core.unlearning.methods.base import ForgetKind, GroupMasks
from cure_core.unlearning.methods.gradient import GradDiff

if TYPE_CHECKING:
    from cure_core.unlearning.methods.config import UnlearnConfig


class PCGrad(GradDiff):
    name = "pcgrad"
    label = "PCGrad"
    help = "forget_loss and the retain loss combined by PCGrad over all parameters"
    strengths = (3e-5, 1e-4, 3e-4)

    def forget_kind(self, config: UnlearnConfig) -> ForgetKind:
        return config.forget_loss

    def direction(
        self, g_f: torch.Tensor, g_r: torch.Tensor, config: UnlearnConfig, masks: GroupMasks | None
    ) -> torch.Tensor:
        return pcgrad(g_f, g_r, 1.0, config.retain_weight)


class SAGO(PCGrad):
    name = "sago"
    label = "SAGO"
    help = "forget_loss and the retain loss combined by SAGO (per element) over all parameters"

    def direction(
        self, g_f: torch.Tensor, g_r: torch.Tensor, config: UnlearnConfig, masks: GroupMasks | None
    ) -> torch.Tensor:
        return sago(g_f, g_r, 1.0, config.retain_weight)
