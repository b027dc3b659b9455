"""The interface every unlearning method implements (method.md §7), and what it works on.

A method turns one step's forget and retain batches into one update direction (a gradient to
descend, flat over all parameters); the runner (:mod:`cure_core.unlearning.runner`) feeds it
to Adam with learning rate = ``strength``. A method is one class: its forget objective, its
retain objective, how it combines the two gradients, whether it needs module groups, its
strength grid and its help text. Subclasses override only what differs from their parent, as
in open-unlearning (``NPO(GradDiff)``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

import torch

from cure_core.unlearning import objectives

if TYPE_CHECKING:
    from cure_core.groups import ModuleGroups
    from cure_core.unlearning.methods.config import UnlearnConfig

LORA_STRENGTH_SCALE = 10.0
"""How much larger a LoRA run's strength grid (and default) is than the full-parameter one.

``lora_B`` starts at zero and the update is (alpha / r)·B·A within a rank-r subspace, so one Adam
learning rate moves the model far less through an adapter than through the full weights. On the
text model NPO at its full-parameter default (1e-4) left the forget set where it was through a
LoRA r=8, while E2URec-style and CURE at 3e-3 (their full-parameter best is 1e-3) came close to
their full-parameter results (docs/results.md, "Unlearning through LoRA"). The factor is a convention, not a tuned
optimum, and on the text model it overshoots: in the benchmark's LoRA block seven of the nine
variants (the teacher objectives among them) chose the lowest strength of their ×10 grid, the
stronger ones costing more than 0.01 validation AUC."""

ForgetKind = Literal["npo", "ga", "teacher"]
"""The forget objectives: NPO, gradient ascent, or KL to a forgetting teacher."""


@dataclass
class Batch:
    """One step's model outputs at the answer position and what the objectives compare with."""

    logits: torch.Tensor  # [n, vocab], with grad
    answers: torch.Tensor  # [n] true answer token ids
    reference: torch.Tensor  # [n, vocab] original model, no grad
    teacher: torch.Tensor | None = None  # [n, vocab] forgetting teacher (forget batch, when the method uses one)


@dataclass
class GroupMasks:
    """Flat boolean masks over all parameters, one per group (disjoint)."""

    forget: torch.Tensor
    retain: torch.Tensor
    shared: torch.Tensor


class UnlearnMethod(ABC):
    """One unlearning method. By default: no retain term, direction g_f + α·g_r (= g_f).

    Class attributes carry the method's definition; the hooks read the run's settings from
    :class:`~cure_core.unlearning.methods.config.UnlearnConfig`.
    """

    name: ClassVar[str]
    label: ClassVar[str]
    help: ClassVar[str]
    strengths: ClassVar[tuple[float, ...]]
    """The sweep grid of the strength (Adam learning rate); the middle one is the default."""
    needs_groups: ClassVar[bool] = False
    """Whether a run computes module groups first (CURE-style and its ablation)."""

    def module_groups(self, groups: ModuleGroups, config: UnlearnConfig) -> ModuleGroups:
        """The groups a run acts on: the circuits' own, unless a control rearranges them."""
        return groups

    def grid(self, lora: bool = False) -> tuple[float, ...]:
        """The sweep grid: :attr:`strengths`, or for a LoRA run each ×:data:`LORA_STRENGTH_SCALE`."""
        return scaled_grid(self.strengths, lora)

    def default_strength(self, lora: bool = False) -> float:
        """The middle of :meth:`grid`."""
        grid = self.grid(lora)
        return grid[len(grid) // 2]

    @abstractmethod
    def forget_kind(self, config: UnlearnConfig) -> ForgetKind:
        """Which forget objective this method uses under ``config``."""

    def uses_teacher(self, config: UnlearnConfig) -> bool:
        """Whether the forget batch needs the forgetting teacher's logits."""
        return self.forget_kind(config) == "teacher"

    def forget_objective(self, config: UnlearnConfig, batch: Batch, answer_ids: tuple[int, int]) -> torch.Tensor:
        kind = self.forget_kind(config)
        if kind == "ga":
            return objectives.gradient_ascent(batch.logits, batch.answers)
        if kind == "teacher":
            assert batch.teacher is not None
            return objectives.kl_to(batch.logits, batch.teacher, answer_ids)
        return objectives.npo(batch.logits, batch.reference, batch.answers, config.npo_beta)

    def retain_objective(self, config: UnlearnConfig, batch: Batch, answer_ids: tuple[int, int]) -> torch.Tensor | None:
        """The loss on the retain batch, or ``None`` when the method has no retain term."""
        return None

    def direction(
        self, g_f: torch.Tensor, g_r: torch.Tensor, config: UnlearnConfig, masks: GroupMasks | None
    ) -> torch.Tensor:
        """The update direction from g_f and g_r (g_r is zero without a retain term)."""
        return g_f + config.retain_weight * g_r


def scaled_grid(strengths: tuple[float, ...], lora: bool) -> tuple[float, ...]:
    """``strengths`` as they are, or for a LoRA run each ×:data:`LORA_STRENGTH_SCALE` (rounded to 6
    significant digits, so that 3e-4 becomes 3e-3 and not 0.0029999999999999996 in a run's id)."""
    return tuple(float(f"{s * LORA_STRENGTH_SCALE:.6g}") for s in strengths) if lora else strengths
