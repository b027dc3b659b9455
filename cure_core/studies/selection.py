"""The method variants every study compares, and how a strength is chosen without the test set.

A strength is chosen on a **selection half** of the forget set (by user for user requests, by
sample otherwise) and the validation split: the lowest JSD to Retrain on the selection half among
strengths whose validation AUC drops by at most ``MAX_VALID_DROP`` (else the smallest drop).
The other, *report* half and the test set are then free for reporting. A text model's validation
split is a seeded draw (:data:`~cure_core.evaluate.TEXT_EVAL_PROMPTS`), like its test set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from pydantic import AfterValidator

from cure_core.evaluate import drawn, evaluation_cap
from cure_core.metrics import jsd, utility
from cure_core.requests import ForgetRequest, RequestSets
from cure_core.unlearning.methods import METHODS, UnlearnConfig
from cure_core.unlearning.methods.base import scaled_grid
from cure_core.unlearning.run_store import load_run_model
from cure_core.unlearning.runs import RunReport, get_run

if TYPE_CHECKING:
    from cure_core.model.recommender import Recommender
    from cure_core.workspace import Workspace

MAX_VALID_DROP = 0.01


@dataclass(frozen=True)
class Variant:
    """A method with fixed settings and its strength grid (the method's own unless given)."""

    label: str
    method: str
    extra: dict[str, Any] = field(default_factory=dict)
    strengths: tuple[float, ...] = ()

    def grid(self, lora: bool = False) -> tuple[float, ...]:
        """The strengths to sweep: ×:data:`~cure_core.unlearning.methods.base.LORA_STRENGTH_SCALE` for a LoRA run."""
        return scaled_grid(self.strengths, lora) if self.strengths else METHODS[self.method].grid(lora)

    @property
    def needs_groups(self) -> bool:
        """Whether a run computes module groups first (CURE-style and its ablation)."""
        return METHODS[self.method].needs_groups

    def config(self, strength: float, **overrides: Any) -> UnlearnConfig:
        return UnlearnConfig(method=self.method, strength=strength, **{**self.extra, **overrides})


_TEACHER = METHODS["e2urec"].strengths  # the teacher objective's steps are larger than NPO's
VARIANTS: list[Variant] = [
    Variant("GA", "ga"),
    Variant("GradDiff", "graddiff"),
    Variant("NPO", "npo"),
    Variant("E2URec-style", "e2urec"),
    Variant("PCGrad", "pcgrad"),
    Variant("SAGO", "sago"),
    Variant("CURE (NPO)", "cure"),
    Variant("CURE (teacher)", "cure", {"forget_loss": "teacher"}, _TEACHER),
    Variant("CURE (teacher, reset rows)", "cure", {"forget_loss": "teacher", "row_rule": "reset"}, _TEACHER),
    Variant(
        "No circuits (teacher, reset rows)", "cure-nocircuit", {"forget_loss": "teacher", "row_rule": "reset"}, _TEACHER
    ),
]
"""Every baseline and CURE-style variant, with the benchmark's strength grids."""

CONTROLS: list[Variant] = [
    Variant(
        "Random groups (teacher, reset rows)", "cure-random", {"forget_loss": "teacher", "row_rule": "reset"}, _TEACHER
    ),
]
"""Controls a study runs only when asked (``--settings-json '{"variants": [...]}'``): CURE's
rules on groups of its sizes drawn at random, each run's seed drawing its own groups."""


RESET_ROWS = ", reset rows"
CURE_STYLE_PREFIX = "CURE"


def is_cure_style(label: str) -> bool:
    """Whether a variant is CURE-style (circuit-chosen groups): its label starts with "CURE".

    The no-circuit ablation and the random-groups control use CURE's rules but count as
    baselines, since the question they answer is whether the circuits' choice of modules helps."""
    return label.startswith(CURE_STYLE_PREFIX)


def variant(label: str, text_mode: bool = False) -> Variant:
    """The variant of ``label``; on a text model (``text_mode``) without its embedding-row reset.

    A text model has no user or item embedding rows to reset (its groups hold heads, key/value
    heads and MLPs only), so there a reset-rows variant is its plain counterpart, labelled
    without ", reset rows"."""
    for v in VARIANTS + CONTROLS:
        if v.label == label:
            if text_mode and v.extra.get("row_rule") == "reset":
                extra = {k: value for k, value in v.extra.items() if k != "row_rule"}
                return Variant(v.label.replace(RESET_ROWS, ""), v.method, extra, v.strengths)
            return v
    raise KeyError(label)


def variants_for(labels: list[str], text_mode: bool) -> list[Variant]:
    """The variants of ``labels`` as :func:`variant` gives them, each once (on a text model a
    reset-rows variant and its plain counterpart are the same)."""
    chosen: dict[str, Variant] = {}
    for label in labels:
        v = variant(label, text_mode)
        chosen.setdefault(v.label, v)
    return list(chosen.values())


def _known_label(label: str) -> str:
    if label not in {v.label for v in VARIANTS + CONTROLS}:
        raise ValueError(f"unknown variant {label!r}; variants: {', '.join(v.label for v in VARIANTS + CONTROLS)}")
    return label


VariantLabel = Annotated[str, AfterValidator(_known_label)]
"""A study setting naming one of :data:`VARIANTS` (checked when the settings are read)."""


def halves(ws: Workspace, request: ForgetRequest, sets: RequestSets, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(selection, report) halves of the forget set: by user for user requests, else by sample."""
    rng = np.random.default_rng(seed)
    if request.kind == "user":
        users = rng.permutation(np.unique(ws.samples.user[sets.forget]))
        chosen = np.isin(ws.samples.user[sets.forget], users[: len(users) // 2])
    else:
        chosen = np.zeros(len(sets.forget), dtype=bool)
        chosen[rng.permutation(len(sets.forget))[: len(sets.forget) // 2]] = True
    return sets.forget[chosen], sets.forget[~chosen]


@dataclass
class Candidate:
    """One finished run scored for selection (selection half, validation) and report (report half)."""

    report: RunReport
    select_jsd: float
    valid_drop: float
    report_jsd: float


class Selector:
    """Scores finished runs of one request on the selection half and validation, and picks."""

    def __init__(self, ws: Workspace, request: ForgetRequest, original: Recommender, retrain: Recommender) -> None:
        sets = ws.sets(request)
        self.ws = ws
        self.select_idx, self.report_idx = halves(ws, request, sets)
        self.valid = drawn(sets.valid, evaluation_cap(original))
        self.ref_select = retrain.predict(ws.samples, self.select_idx)
        self.ref_report = retrain.predict(ws.samples, self.report_idx)
        self.valid_auc_original = (
            utility(ws.samples.label[self.valid], original.predict(ws.samples, self.valid))["auc"] or 0.5
        )

    def score_model(self, model: Recommender, report: RunReport) -> Candidate:
        samples = self.ws.samples
        drop = self.valid_auc_original - (
            utility(samples.label[self.valid], model.predict(samples, self.valid))["auc"] or 0.5
        )
        return Candidate(
            report,
            jsd(model.predict(samples, self.select_idx), self.ref_select),
            drop,
            jsd(model.predict(samples, self.report_idx), self.ref_report),
        )

    def score(self, report: RunReport) -> Candidate:
        return self.score_model(load_run_model(self.ws, str(report.run)), report)


def choose(candidates: list[Candidate]) -> Candidate:
    """Lowest selection-half JSD within the validation budget, else the smallest validation drop."""
    ok = [c for c in candidates if c.valid_drop <= MAX_VALID_DROP]
    return min(ok, key=lambda c: c.select_jsd) if ok else min(candidates, key=lambda c: c.valid_drop)


def chosen_run(
    ws: Workspace, request: ForgetRequest, v: Variant, steps: int = 60, grid_points: int | None = None
) -> Candidate:
    """Every strength of ``v``'s grid run on ``request`` (cached), scored, and the chosen one."""
    original, retrain = ws.ensure_models(request, quiet=True)
    selector = Selector(ws, request, original, retrain)
    return choose(
        [selector.score(get_run(ws, request, v.config(s, steps=steps), quiet=True)) for s in v.grid()[:grid_points]]
    )
