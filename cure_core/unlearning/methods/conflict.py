"""Methods that resolve conflicts between g_f and g_r over all parameters: PCGrad and SAGO.

Their forget objective is the ``forget_loss`` argument (NPO, GA or the teacher KL of
E2URec-style), so the combination rules can be compared with the objective held fixed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch

from cure_core.unlearning.combine import COMBINERS
from cure_core.unlearning.methods.arguments import Combiner, ConflictArguments, ForgetKind
from cure_core.unlearning.methods.gradient import NPO

if TYPE_CHECKING:
    from cure_core.unlearning.methods.base import GroupMasks


class PCGrad(NPO):
    name = "pcgrad"
    label = "PCGrad"
    help = "forget_loss and the retain loss combined by PCGrad over all parameters"
    arguments = ConflictArguments
    combiner: ClassVar[Combiner] = "pcgrad"
    args: ConflictArguments

    def forget_kind(self) -> ForgetKind:
        return self.args.forget_loss

    def direction(self, g_f: torch.Tensor, g_r: torch.Tensor, masks: GroupMasks | None) -> torch.Tensor:
        return COMBINERS[self.combiner](g_f, g_r, 1.0, self.args.retain_weight)


class SAGO(PCGrad):
    name = "sago"
    label = "SAGO"
    help = "forget_loss and the retain loss combined by SAGO (per element) over all parameters"
    combiner = "sago"
