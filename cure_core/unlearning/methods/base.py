"""The interface every unlearning method implements (method.md §7), and what it works on.

A method turns one step's forget and retain batches into one update direction (a gradient to
descend, flat over all parameters); the runner (:mod:`cure_core.unlearning.runner`) feeds it
to Adam with learning rate = ``strength``. A method is one class: its forget objective, its
retain objective, how it combines the two gradients, its arguments model, whether it needs
module groups, its strength grid and its help text. Subclasses override only what differs from
their parent, as in open-unlearning (``NPO(GradDiff)``); an instance is the method with one
run's arguments (:meth:`UnlearnMethod.for_run`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Self

import torch

from cure_core.unlearning import objectives
from cure_core.unlearning.methods.arguments import ForgetKind, MethodArguments

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


class UnlearnMethod:
    """One unlearning method. By default: no retain term, direction g_f.

    Class attributes carry the method's definition; the hooks read the run's arguments
    (:attr:`args`, an instance of :attr:`arguments`).
    """

    name: ClassVar[str]
    label: ClassVar[str]
    help: ClassVar[str]
    strengths: ClassVar[tuple[float, ...]]
    """The sweep grid of the strength (Adam learning rate); the middle one is the default."""
    arguments: ClassVar[type[MethodArguments]] = MethodArguments
    """The model of the method's arguments: its parent's, or a subclass adding what it adds."""
    forget: ClassVar[ForgetKind]
    """The forget objective, unless the arguments choose it (:meth:`forget_kind`)."""
    needs_groups: ClassVar[bool] = False
    """Whether a run computes module groups first (CURE-style and its ablation)."""

    def __init__(self, args: MethodArguments) -> None:
        self.args = args

    @classmethod
    def for_run(cls, config: UnlearnConfig) -> Self:
        """The method with its own arguments taken from the run's settings."""
        return cls(cls.arguments.model_validate(config.model_dump(include=set(cls.arguments.model_fields))))

    @classmethod
    def grid(cls, lora: bool = False) -> tuple[float, ...]:
        """The sweep grid: :attr:`strengths`, or for a LoRA run each ×:data:`LORA_STRENGTH_SCALE`."""
        return scaled_grid(cls.strengths, lora)

    @classmethod
    def default_strength(cls, lora: bool = False) -> float:
        """The middle of :meth:`grid`."""
        grid = cls.grid(lora)
        return grid[len(grid) // 2]

    def module_groups(self, groups: ModuleGroups, seed: int) -> ModuleGroups:
        """The groups a run of seed ``seed`` acts on: the circuits' own, unless a control rearranges them."""
        return groups

    def forget_kind(self) -> ForgetKind:
        """Which forget objective the run uses."""
        return self.forget

    def uses_teacher(self) -> bool:
        """Whether the forget batch needs the forgetting teacher's logits."""
        return self.forget_kind() == "teacher"

    def forget_objective(self, batch: Batch, answer_ids: tuple[int, int]) -> torch.Tensor:
        """The loss on the forget batch: gradient ascent, or KL to the teacher (NPO adds its own)."""
        if self.forget_kind() == "teacher":
            assert batch.teacher is not None
            return objectives.kl_to(batch.logits, batch.teacher, answer_ids)
        return objectives.gradient_ascent(batch.logits, batch.answers)

    def retain_objective(self, batch: Batch, answer_ids: tuple[int, int]) -> torch.Tensor | None:
        """The loss on the retain batch, or ``None`` when the method has no retain term."""
        return None

    def direction(self, g_f: torch.Tensor, g_r: torch.Tensor, masks: GroupMasks | None) -> torch.Tensor:
        """The update direction from g_f and g_r (g_r is zero without a retain term)."""
        return g_f


def scaled_grid(strengths: tuple[float, ...], lora: bool) -> tuple[float, ...]:
    """``strengths`` as they are, or for a LoRA run each ×:data:`LORA_STRENGTH_SCALE` (rounded to 6
    significant digits, so that 3e-4 becomes 3e-3 and not 0.0029999999999999996 in a run's id)."""
    return tuple(float(f"{s * LORA_STRENGTH_SCALE:.6g}") for s in strengths) if lora else strengths
