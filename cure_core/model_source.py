"""Which model the commands and pages work on: the item model trained here, or a user's own
checkpoint read through a prompt profile.

:class:`ModelSource` is the one definition of the ``--model / --adapter / --profile / --dtype /
--device / --retrain-model / --retrain-adapter`` options (the CLI builds them from its fields,
the app reads them from ``CURE_*`` environment variables). Without ``model`` everything works
on the item-token recommender trained and cached here, as before. With ``model`` the original
is the user's checkpoint (adapter merged) and Retrain is the user's too — given as its own
folder, or as another adapter on the same base — or unavailable, which every metric that needs
it says.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cure_core.checkpoints.loading import Device, Dtype
from cure_core.errors import CureError
from cure_core.profiles.profile import SHIPPED_PROFILES

ENVIRONMENT = {
    "model": "CURE_MODEL",
    "adapter": "CURE_ADAPTER",
    "profile": "CURE_PROFILE",
    "dtype": "CURE_DTYPE",
    "device": "CURE_DEVICE",
    "retrain_model": "CURE_RETRAIN_MODEL",
    "retrain_adapter": "CURE_RETRAIN_ADAPTER",
}
"""The environment variable of each field (``cure app --model ...`` sets them for the app)."""

USER_ONLY = ("adapter", "profile", "dtype", "device", "retrain_model", "retrain_adapter")
"""Fields that describe a user's checkpoint: given without ``model`` they would be ignored, so they are refused."""


class ModelSource(BaseModel):
    """The model to work on (part of what keys cached attributions: see :func:`fingerprint`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = Field(
        None,
        description="a Hugging Face model folder (config.json, *.safetensors, tokenizer files); "
        "default: the item-token recommender trained here",
    )
    adapter: str | None = Field(None, description="a PEFT LoRA adapter folder over --model, merged for analysis")
    profile: str = Field(
        "tallrec", description=f"prompt profile of --model: {', '.join(SHIPPED_PROFILES)}, or a profile .toml file"
    )
    dtype: Dtype = Field("fp32", description="dtype --model is loaded in")
    device: Device = Field("auto", description="device of --model (auto: CUDA when present)")
    retrain_model: str | None = Field(
        None, description="the user's Retrain: a model folder trained without the forget set (default: --model)"
    )
    retrain_adapter: str | None = Field(
        None, description="the user's Retrain as a LoRA adapter (over --retrain-model, or over --model)"
    )

    @field_validator("model", "adapter", "retrain_model", "retrain_adapter")
    @classmethod
    def _existing_folder(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).expanduser().is_dir():
            raise ValueError(f"no folder at {value}")
        return value

    @model_validator(mode="after")
    def _user_fields_need_a_model(self) -> ModelSource:
        if self.model is None:
            given = [name for name in USER_ONLY if name in self.model_fields_set]
            if given:
                flag = "--" + given[0].replace("_", "-")
                raise ValueError(
                    f"{flag} ({ENVIRONMENT[given[0]]}) applies to a user's checkpoint; give --model PATH "
                    "(or CURE_MODEL) with it"
                )
        return self

    @property
    def has_retrain(self) -> bool:
        return self.retrain_model is not None or self.retrain_adapter is not None

    def environment(self) -> dict[str, str]:
        """The ``CURE_*`` variables that give this source to another process."""
        return {
            var: str(getattr(self, field)) for field, var in ENVIRONMENT.items() if getattr(self, field) is not None
        }

    def label(self) -> str:
        """A short name for headers: the model folder's name, with the adapter's."""
        if self.model is None:
            return "item model trained here"
        name = Path(self.model).name
        return name + (f" + {Path(self.adapter).name}" if self.adapter else "")


class MissingRetrainError(CureError):
    """A user's model was given without a Retrain, and the metric asked for needs one."""

    def __init__(self) -> None:
        super().__init__(
            "no Retrain was given for this model, so metrics against Retrain are unavailable",
            "pass --retrain-model PATH (a model trained without the forget set) or --retrain-adapter PATH",
        )
