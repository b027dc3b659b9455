"""CURE-style unlearning: a different rule per module group, its no-circuit ablation and its
random-groups control.

Per group: forget-specific takes g_f; retain-specific α·g_r or stays frozen (``retain_rule``);
task-shared combines both by PCGrad or SAGO (``shared_rule``); outside stays frozen. Forget-
specific embedding rows take the forget update or are reset once (``row_rule``; done by the
runner before the first step).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from cure_core.errors import CureError
from cure_core.unlearning.combine import COMBINERS
from cure_core.unlearning.methods.arguments import CureArguments
from cure_core.unlearning.methods.conflict import PCGrad

if TYPE_CHECKING:
    from cure_core.groups import ModuleGroups
    from cure_core.unlearning.methods.base import GroupMasks


class Cure(PCGrad):
    name = "cure"
    label = "CURE-style (per-group rules)"
    help = (
        "per module group: forget-specific g_f, retain-specific α·g_r or frozen, task-shared PCGrad or SAGO, "
        "outside frozen"
    )
    strengths = (1e-4, 3e-4, 1e-3)
    arguments = CureArguments
    needs_groups = True
    args: CureArguments

    def direction(self, g_f: torch.Tensor, g_r: torch.Tensor, masks: GroupMasks | None) -> torch.Tensor:
        if masks is None:
            raise CureError(
                "CURE-style unlearning needs module groups",
                "compute them first (`cure groups`), or let `cure unlearn` do it",
            )
        args = self.args
        direction = torch.zeros_like(g_f)
        direction[masks.forget] = g_f[masks.forget]
        if args.retain_rule == "retain_update":
            direction[masks.retain] = args.retain_weight * g_r[masks.retain]
        if masks.shared.any():
            direction[masks.shared] = COMBINERS[args.shared_rule](
                g_f[masks.shared], g_r[masks.shared], 1.0, args.retain_weight
            )
        return direction


class CureNoCircuit(Cure):
    name = "cure-nocircuit"
    label = "CURE-style without circuits (ablation: every head/MLP task-shared)"
    help = "CURE-style rules with every head and MLP task-shared: what is left when the circuits decide nothing"

    def module_groups(self, groups: ModuleGroups, seed: int) -> ModuleGroups:
        return groups.without_circuits()


class CureRandomGroups(Cure):
    name = "cure-random"
    label = "CURE-style with random groups (control: the circuits' group sizes, modules drawn at random)"
    help = (
        "CURE-style rules on groups of the circuits' sizes whose heads and MLPs are drawn at random (by --seed): "
        "does it matter which modules the circuits chose?"
    )

    def module_groups(self, groups: ModuleGroups, seed: int) -> ModuleGroups:
        return groups.shuffled(seed)
