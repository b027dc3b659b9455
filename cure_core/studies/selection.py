"""How a variant's strength is chosen without the test set.

A strength is chosen on a **selection half** of the forget set (by user for user requests, by
sample otherwise) and the validation split: the lowest JSD to Retrain on the selection half among
strengths whose validation AUC drops by at most ``MAX_VALID_DROP`` (else the smallest drop).
The other, *report* half and the test set are then free for reporting. A text model's validation
split is a seeded draw (:data:`~cure_core.evaluate.TEXT_EVAL_PROMPTS`), like its test set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cure_core.evaluate import drawn, evaluation_cap
from cure_core.metrics import jsd, utility
from cure_core.requests import ForgetRequest, RequestSets
from cure_core.unlearning.run_store import load_run_model
from cure_core.unlearning.runs import RunReport, get_run

if TYPE_CHECKING:
    from cure_core.model.recommender import Recommender
    from cure_core.studies.variants import Variant
    from cure_core.workspace import Workspace

MAX_VALID_DROP = 0.01


def halves(ws: Workspace, request: ForgetRequest, sets: RequestSets, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(selection, report) halves of the forget set: by user for user requests, else by sample."""
    rng = np.random.default_rng(seed)
    if request.kind == "user":
        users = rng.permutation(np.unique(ws.data.samples.user[sets.forget]))
        chosen = np.isin(ws.data.samples.user[sets.forget], users[: len(users) // 2])
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
        sets = ws.data.sets(request)
        self.ws = ws
        self.select_idx, self.report_idx = halves(ws, request, sets)
        self.valid = drawn(sets.valid, evaluation_cap(original))
        self.ref_select = retrain.predict(ws.data.samples, self.select_idx)
        self.ref_report = retrain.predict(ws.data.samples, self.report_idx)
        self.valid_auc_original = (
            utility(ws.data.samples.label[self.valid], original.predict(ws.data.samples, self.valid))["auc"] or 0.5
        )

    def score_model(self, model: Recommender, report: RunReport) -> Candidate:
        samples = self.ws.data.samples
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
        return self.score_model(load_run_model(self.ws.models, str(report.run)), report)


def choose(candidates: list[Candidate]) -> Candidate:
    """Lowest selection-half JSD within the validation budget, else the smallest validation drop."""
    ok = [c for c in candidates if c.valid_drop <= MAX_VALID_DROP]
    return min(ok, key=lambda c: c.select_jsd) if ok else min(candidates, key=lambda c: c.valid_drop)


def chosen_run(
    ws: Workspace, request: ForgetRequest, v: Variant, steps: int = 60, grid_points: int | None = None
) -> Candidate:
    """Every strength of ``v``'s grid run on ``request`` (cached), scored, and the chosen one."""
    original, retrain = ws.models.ensure_models(request, quiet=True)
    selector = Selector(ws, request, original, retrain)
    return choose(
        [selector.score(get_run(ws, request, v.config(s, steps=steps), quiet=True)) for s in v.grid()[:grid_points]]
    )
