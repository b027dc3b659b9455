"""Each method's own arguments (open-unlearning's ``method_args``): one pydantic model per
family, each subclass adding only what its methods add (``NPOArguments`` adds ``npo_beta``).

A method reads its arguments alone (:meth:`~cure_core.unlearning.methods.base.UnlearnMethod.for_run`
takes them out of the run's settings); a study variant fixes some of them
(:mod:`cure_core.studies.variants`). :class:`CureArguments` extends every other model, so the
run's settings (:class:`~cure_core.unlearning.methods.config.UnlearnConfig`), which extend it,
hold every method's arguments, and a run's id names them all.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field

ForgetKind = Literal["npo", "ga", "teacher"]
"""The forget objectives: NPO, gradient ascent, or KL to a forgetting teacher."""

RetainKind = Literal["nll", "kl"]
"""The retain objectives: NLL, or KL to the original."""

Combiner = Literal["pcgrad", "sago"]
"""The rules that combine g_f and g_r where they conflict (:data:`~cure_core.unlearning.combine.COMBINERS`)."""


class MethodArguments(BaseModel):
    """No arguments: gradient ascent takes none."""

    model_config = ConfigDict(extra="forbid")

    def without_embedding_rows(self) -> Self:
        """These arguments on a model without user or item embedding rows (a text model)."""
        return self


class RetainArguments(MethodArguments):
    """A method with a retain term (E2URec-style, whose retain loss is always KL)."""

    retain_weight: float = Field(1.0, ge=0, description="α: weight of the retain gradient")


class GradDiffArguments(RetainArguments):
    retain_loss: RetainKind = "nll"


class NPOArguments(GradDiffArguments):
    npo_beta: float = Field(0.1, gt=0)


class ConflictArguments(NPOArguments):
    """PCGrad and SAGO: the forget objective is an argument (NPO takes ``npo_beta``)."""

    forget_loss: ForgetKind = Field("npo", description="forget objective of pcgrad, sago and cure")


class CureArguments(ConflictArguments):
    """CURE-style and its ablation and control: one rule per module group."""

    retain_rule: Literal["retain_update", "frozen"] = "retain_update"
    shared_rule: Combiner = "pcgrad"
    row_rule: Literal["update", "reset"] = Field(
        "update",
        description=(
            "cure: forget-specific embedding rows take the forget update, or are reset once (user rows to "
            "<unk_user>, item rows to the mean item row) and then frozen"
        ),
    )

    def without_embedding_rows(self) -> Self:
        """No rows to reset: ``row_rule`` is ``update``."""
        return self.model_copy(update={"row_rule": "update"})
