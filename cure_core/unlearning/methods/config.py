"""The settings of an unlearning run (every field is part of the run's id)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from cure_core.unlearning.methods.base import ForgetKind
from cure_core.unlearning.methods.registry import METHODS

MethodName = Literal[tuple(METHODS)]  # type: ignore[valid-type]
"""The registered method names, as a choice type (the CLI and the app build options from it)."""


class UnlearnConfig(BaseModel):
    """Every setting of a run (part of its id). Each method reads the fields it needs."""

    model_config = ConfigDict(extra="forbid")

    method: MethodName  # type: ignore[valid-type]
    strength: float = Field(1e-3, gt=0, description="Adam learning rate of the update")
    steps: int = Field(60, ge=1, le=100_000)
    batch_size: int = Field(64, ge=1)
    seed: int = 0
    retain_weight: float = Field(1.0, ge=0, description="α: weight of the retain gradient")
    retain_loss: Literal["nll", "kl"] = "nll"
    forget_loss: ForgetKind = Field("npo", description="forget objective of pcgrad, sago and cure")
    npo_beta: float = Field(0.1, gt=0)
    retain_rule: Literal["retain_update", "frozen"] = "retain_update"
    shared_rule: Literal["pcgrad", "sago"] = "pcgrad"
    row_rule: Literal["update", "reset"] = Field(
        "update",
        description=(
            "cure: forget-specific embedding rows take the forget update, or are reset once (user rows to "
            "<unk_user>, item rows to the mean item row) and then frozen"
        ),
    )
    probe_every: int = Field(10, ge=1)
    probe_size: int = Field(256, ge=8)
