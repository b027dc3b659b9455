"""The settings of an unlearning run (every field is part of the run's id)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from cure_core.unlearning.methods.arguments import CureArguments
from cure_core.unlearning.methods.registry import METHODS

MethodName = Literal[tuple(METHODS)]  # type: ignore[valid-type]
"""The registered method names, as a choice type (the CLI and the app build options from it)."""


class RunSettings(BaseModel):
    """What every run sets, whatever its method: the method, its strength, the steps and batches."""

    model_config = ConfigDict(extra="forbid")

    method: MethodName  # type: ignore[valid-type]
    strength: float = Field(1e-3, gt=0, description="Adam learning rate of the update")
    steps: int = Field(60, ge=1, le=100_000)
    batch_size: int = Field(64, ge=1)
    seed: int = 0


class UnlearnConfig(CureArguments, RunSettings):
    """Every setting of a run (part of its id): :class:`RunSettings`, the arguments of every
    method (:class:`CureArguments` extends all the others; each method reads its own, see
    :meth:`~cure_core.unlearning.methods.base.UnlearnMethod.for_run`), the probes and LoRA.
    The fields come in that order, the order of a report's ``config``."""

    model_config = ConfigDict(extra="forbid")
    OPTIONS: ClassVar[tuple[str, ...]] = (
        "steps",
        "batch_size",
        "seed",
        "retain_weight",
        "retain_loss",
        "forget_loss",
        "retain_rule",
        "shared_rule",
        "row_rule",
        "lora",
        "lora_rank",
        "lora_alpha",
        "lora_targets",
    )
    """The fields besides method and strength that ``cure unlearn`` and ``cure compare`` take as options."""

    probe_every: int = Field(10, ge=1)
    probe_size: int = Field(256, ge=8)
    lora: bool = Field(
        False,
        description=(
            "train a new LoRA adapter on top of the (merged) model instead of updating the full weights; the "
            "references (KL, NPO, teacher) are the same network with the adapter disabled"
        ),
    )
    lora_rank: int = Field(8, ge=1, le=1024, description="rank r of the unlearning adapter (with --lora)")
    lora_alpha: float = Field(16.0, gt=0, description="LoRA scaling numerator: the update is (alpha / r)·B·A")
    lora_targets: tuple[str, ...] = Field(
        (),
        description=(
            "module names (suffixes) the adapter wraps; empty: every attention and MLP projection of the architecture"
        ),
    )

    def id_json(self) -> str:
        """The settings as they enter a run's id: the LoRA fields only when ``lora`` is on, so the
        ids of full-parameter runs cached before LoRA existed stay what they were."""
        return self.model_dump_json(exclude=None if self.lora else set(LORA_FIELDS))


LORA_FIELDS = ("lora", "lora_rank", "lora_alpha", "lora_targets")
