"""The method variants the studies compare, as data: a method, the arguments it is fixed to, its
strength grid and whether it is CURE-style. A variant is named by its label in a study's
settings, its cells and its tables.

A text model has no user or item embedding rows, so a variant that resets them runs there as
its plain counterpart, under the label it declares for that (``text_label``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Annotated, Any

from pydantic import AfterValidator

from cure_core.unlearning.methods import METHODS, MethodArguments, UnlearnConfig
from cure_core.unlearning.methods.base import scaled_grid


@dataclass(frozen=True)
class Variant:
    """A method with the arguments it is fixed to, its strength grid (the method's own unless
    given) and its tags; checked against the method's arguments model when defined."""

    label: str
    method: str
    arguments: dict[str, Any] = field(default_factory=dict)
    """The method's arguments this variant fixes, by name (the others keep their defaults)."""
    strengths: tuple[float, ...] = ()
    cure_style: bool = False
    """CURE's rules on the circuits' groups. The no-circuit ablation and the random-groups
    control use CURE's rules too but count as baselines: the question they answer is whether
    the circuits' choice of modules helps."""
    text_label: str | None = None
    """The label on a text model, for a variant whose arguments change there (it resets rows)."""

    def __post_init__(self) -> None:
        if not self.strengths:
            object.__setattr__(self, "strengths", METHODS[self.method].strengths)
        arguments = self.method_arguments
        if (arguments.without_embedding_rows() != arguments) != (self.text_label is not None):
            raise ValueError(f"variant {self.label!r}: give a text_label exactly when its arguments reset rows")

    @property
    def method_arguments(self) -> MethodArguments:
        """The method's arguments model with this variant's values."""
        return METHODS[self.method].arguments.model_validate(self.arguments)

    def grid(self, lora: bool = False) -> tuple[float, ...]:
        """The strengths to sweep: ×:data:`~cure_core.unlearning.methods.base.LORA_STRENGTH_SCALE` for a LoRA run."""
        return scaled_grid(self.strengths, lora)

    @property
    def needs_groups(self) -> bool:
        """Whether a run computes module groups first (CURE-style and its ablation)."""
        return METHODS[self.method].needs_groups

    def config(self, strength: float, **overrides: Any) -> UnlearnConfig:
        return UnlearnConfig(method=self.method, strength=strength, **{**self.arguments, **overrides})

    def without_rows(self) -> Variant:
        """This variant on a model without embedding rows: unchanged, or its plain counterpart."""
        if self.text_label is None:
            return self
        arguments = self.method_arguments.without_embedding_rows().model_dump(exclude_defaults=True)
        return replace(self, label=self.text_label, arguments=arguments, text_label=None)


_TEACHER = METHODS["e2urec"].strengths  # the teacher objective's steps are larger than NPO's
_RESET_ROWS = {"forget_loss": "teacher", "row_rule": "reset"}
VARIANTS: list[Variant] = [
    Variant("GA", "ga"),
    Variant("GradDiff", "graddiff"),
    Variant("NPO", "npo"),
    Variant("E2URec-style", "e2urec"),
    Variant("PCGrad", "pcgrad"),
    Variant("SAGO", "sago"),
    Variant("CURE (NPO)", "cure", cure_style=True),
    Variant("CURE (teacher)", "cure", {"forget_loss": "teacher"}, _TEACHER, cure_style=True),
    Variant("CURE (teacher, reset rows)", "cure", _RESET_ROWS, _TEACHER, cure_style=True, text_label="CURE (teacher)"),
    Variant(
        "No circuits (teacher, reset rows)", "cure-nocircuit", _RESET_ROWS, _TEACHER, text_label="No circuits (teacher)"
    ),
]
"""Every baseline and CURE-style variant, with the benchmark's strength grids."""

CONTROLS: list[Variant] = [
    Variant(
        "Random groups (teacher, reset rows)",
        "cure-random",
        _RESET_ROWS,
        _TEACHER,
        text_label="Random groups (teacher)",
    ),
]
"""Controls a study runs only when asked (``--settings-json '{"variants": [...]}'``): CURE's
rules on groups of its sizes drawn at random, each run's seed drawing its own groups."""

_NAMED = {v.label: v for v in VARIANTS + CONTROLS}
_AS_TABLES_NAME_THEM = {**{v.without_rows().label: v.without_rows() for v in VARIANTS + CONTROLS}, **_NAMED}


def variant(label: str, embedding_rows: bool = True) -> Variant:
    """The variant of ``label`` as it runs on a model with or without ``embedding_rows``."""
    return _NAMED[label] if embedding_rows else _NAMED[label].without_rows()


def variants_for(labels: list[str], embedding_rows: bool) -> list[Variant]:
    """The variants of ``labels`` as :func:`variant` gives them, each once (without embedding
    rows a reset-rows variant and its plain counterpart are the same)."""
    chosen: dict[str, Variant] = {}
    for label in labels:
        v = variant(label, embedding_rows)
        chosen.setdefault(v.label, v)
    return list(chosen.values())


def is_cure_style(label: str) -> bool:
    """Whether the variant of ``label`` (on any model, as a study's tables name it) is CURE-style."""
    return _AS_TABLES_NAME_THEM[label].cure_style


def _known_label(label: str) -> str:
    if label not in _NAMED:
        raise ValueError(f"unknown variant {label!r}; variants: {', '.join(_NAMED)}")
    return label


VariantLabel = Annotated[str, AfterValidator(_known_label)]
"""A study setting naming one of :data:`VARIANTS` or :data:`CONTROLS` (checked when the settings are read)."""
