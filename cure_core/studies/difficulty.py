"""``cure study difficulty``: which forget users are hard to unlearn, read from their circuits
(after CUD, arXiv 2601.09624), and whether that predicts what CURE-style actually achieves.

1. **Probe.** Per forget user, a short gradient-ascent run on that user's samples alone (on a copy
   of Original); the rise of the user's NLL is how easily the model lets go of them.
2. **Anchors.** The ``anchors`` users whose NLL rises fastest are the *easy* anchors, the slowest
   the *hard* anchors (this choice of anchors is the probe's, stated, not CUD's own).
3. **Score.** Per user, an EAP-IG circuit on their forget prompts (edge scores, unit-normalised);
   difficulty = cos(user, mean hard anchor) − cos(user, mean easy anchor), anchors left out of
   their own anchor mean.
4. **Check.** Spearman correlation of the difficulty score with the per-user forgetting after the
   chosen CURE-style run on the whole request (NLL rise, and fall of JSD to Retrain), next to the
   same correlation for the raw probe (what the circuits must add to) — also without the anchors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from pydantic import Field
from scipy.stats import spearmanr

from analysis.attribution import attribute
from cure_core.circuits import AttributionSettings, answer_metric, circuit_context, prompt_batches
from cure_core.errors import CureError
from cure_core.metrics import jsd
from cure_core.requests import user_request
from cure_core.studies.base import Study, StudyJob, StudyOutput
from cure_core.studies.common import StudySettings, laid_out, resolve_request
from cure_core.studies.selection import chosen_run
from cure_core.studies.variants import VariantLabel, variant
from cure_core.unlearning.methods import UnlearnConfig
from cure_core.unlearning.run_store import load_run_model
from cure_core.unlearning.runner import unlearn

if TYPE_CHECKING:
    from cure_core.metrics import Predictions
    from cure_core.model.recommender import Recommender
    from cure_core.workspace import Workspace


class DifficultySettings(StudySettings):
    request: str = "default"
    probe_steps: int = Field(10, ge=1)
    probe_strength: float = Field(1e-4, gt=0)
    anchors: int = Field(5, ge=1)
    n_prompts: int = Field(64, ge=1)
    attribution_steps: int = Field(5, ge=1)
    cure_variant: VariantLabel = "CURE (teacher, reset rows)"
    steps: int = Field(60, ge=1)
    grid_points: int | None = Field(None, ge=1)

    @classmethod
    def quick(cls) -> DifficultySettings:
        return cls(
            quick_mode=True,
            probe_steps=3,
            anchors=2,
            n_prompts=16,
            attribution_steps=2,
            cure_variant="CURE (NPO)",
            steps=3,
            grid_points=1,
        )


def nll(preds: Predictions, labels: np.ndarray) -> float:
    return float(-preds.answer_logp(labels).mean())


def probe_rise(ws: Workspace, original: Recommender, user: str, idx: np.ndarray, settings: DifficultySettings) -> float:
    """NLL rise on the user's forget samples after a short GA on them alone (copy of Original)."""
    request = user_request(ws.data.dataset, ws.data.samples, user_ids=[user])
    config = UnlearnConfig(
        method="ga", strength=settings.probe_strength, steps=settings.probe_steps, probe_every=settings.probe_steps
    )
    probed = unlearn(original, ws.data.samples, ws.data.sets(request), request, config).model
    labels = ws.data.samples.label[idx]
    return nll(probed.predict(ws.data.samples, idx), labels) - nll(original.predict(ws.data.samples, idx), labels)


def user_circuit(ctx, ws: Workspace, idx: np.ndarray, settings: DifficultySettings) -> list[float]:
    """The user's EAP-IG edge scores over real edges, unit-normalised."""
    attribution = AttributionSettings(n_prompts=settings.n_prompts, steps=settings.attribution_steps)
    chosen = np.sort(np.random.default_rng(0).permutation(idx)[: settings.n_prompts])
    batches = prompt_batches(ctx.rec, ws.data.samples, chosen, ctx.request, attribution)
    with ctx.rec.lock:
        result = attribute(ctx.bridge, batches, answer_metric(ctx.rec), "eap-ig", settings.attribution_steps)
    scores = result.scores[result.shape.real_edge_mask()]
    return (scores / (np.linalg.norm(scores) or 1.0)).tolist()


def difficulty_scores(vectors: np.ndarray, easy: np.ndarray, hard: np.ndarray) -> np.ndarray:
    """cos(u, mean hard) − cos(u, mean easy) per row, leaving u out of its own anchor mean."""

    def cos_to(anchor_rows: np.ndarray, i: int) -> float:
        rows = anchor_rows[anchor_rows != i]
        centre = vectors[rows].mean(axis=0)
        return float(vectors[i] @ centre / ((np.linalg.norm(vectors[i]) * np.linalg.norm(centre)) or 1.0))

    return np.array([cos_to(hard, i) - cos_to(easy, i) for i in range(len(vectors))])


class Difficulty(Study):
    name = "difficulty"
    settings = DifficultySettings

    def compute(self, job: StudyJob) -> StudyOutput:
        ws, settings = job.ws, job.settings
        request = resolve_request(ws, settings.request)
        if request.kind != "user":
            raise CureError(
                f"the difficulty study needs a user-level request, not {request.kind}-level {request.id}",
                "use --request default or a `cure forget --users` request",
            )
        original, retrain = job.open_on(request)
        sets = ws.data.sets(request)
        codes = ws.data.samples.user[sets.forget]
        users = [str(ws.data.samples.user_ids[c]) for c in np.unique(codes)]
        per_user_idx = {u: sets.forget[codes == code] for u, code in zip(users, np.unique(codes), strict=True)}
        job.bar(2 * len(users) + 1)
        ctx = circuit_context(ws, request)
        rows, vectors = [], []
        for u in users:
            idx = per_user_idx[u]
            rise = job.cell(f"probe-{u}", lambda u=u, idx=idx: probe_rise(ws, original, u, idx, settings))
            job.tick(user=u, step="probe")
            vectors.append(job.cell(f"circuit-{u}", lambda idx=idx: user_circuit(ctx, ws, idx, settings)))
            job.tick(user=u, step="circuit")
            rows.append({"user": u, "samples": len(idx), "probe_rise": rise})
        chosen = job.cell(
            "cure-run",
            lambda: (
                chosen_run(
                    ws,
                    request,
                    variant(settings.cure_variant, ws.models.backend.capabilities.embedding_rows),
                    settings.steps,
                    settings.grid_points,
                ).report.run
            ),
        )
        cure = load_run_model(ws.models, chosen)
        job.tick(step="CURE run")
        for row in rows:
            idx = per_user_idx[row["user"]]
            labels = ws.data.samples.label[idx]
            before, after, ref = (model.predict(ws.data.samples, idx) for model in (original, cure, retrain))
            row["cure_nll_rise"] = nll(after, labels) - nll(before, labels)
            row["cure_jsd_fall"] = jsd(before, ref) - jsd(after, ref)
        table = pd.DataFrame(rows)
        order = np.argsort(-table["probe_rise"].to_numpy())
        k = min(settings.anchors, len(users) // 2)
        easy, hard = order[:k], order[-k:]
        table["anchor"] = ""
        table.loc[easy, "anchor"], table.loc[hard, "anchor"] = "easy", "hard"
        table["difficulty"] = difficulty_scores(np.array(vectors), easy, hard)
        correlations = correlate(table)
        return StudyOutput(
            {"users": table.to_dict("records"), "correlations": correlations},
            {"difficulty": figure(table)},
            verdict(correlations, chosen, k),
        )


def correlate(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Spearman ρ (and p) of each predictor with each per-user forgetting measure."""
    out = []
    for subset, part in (("all users", table), ("without anchors", table[table["anchor"] == ""])):
        for predictor in ("difficulty", "probe_rise"):
            for outcome in ("cure_nll_rise", "cure_jsd_fall"):
                if len(part) >= 3 and part[predictor].nunique() > 1 and part[outcome].nunique() > 1:
                    rho, p = spearmanr(part[predictor], part[outcome])
                    out.append(
                        {
                            "users": subset,
                            "n": len(part),
                            "predictor": predictor,
                            "outcome": outcome,
                            "spearman": float(rho),
                            "p": float(p),
                        }
                    )
    return out


def verdict(correlations: list[dict[str, Any]], run: str, anchors: int) -> list[str]:
    lines = [
        f"Anchors: the {anchors} users whose NLL rises fastest (easy) and slowest (hard) under the GA "
        f"probe. CURE-style run: {run}."
    ]
    for c in correlations:
        if c["outcome"] == "cure_nll_rise":
            lines.append(
                f"{c['users']} (n={c['n']}): Spearman({c['predictor']}, NLL rise after CURE) = "
                f"{c['spearman']:+.2f} (p = {c['p']:.3f})"
            )
    found = [
        c
        for c in correlations
        if c["predictor"] == "difficulty" and c["users"] == "without anchors" and c["outcome"] == "cure_nll_rise"
    ]
    if found:
        c = found[0]
        meaning = (
            "the circuit score predicts less forgetting for harder users"
            if c["spearman"] < 0 and c["p"] < 0.05
            else "the circuit score does not significantly predict per-user forgetting"
        )
        lines.append(f"Verdict: {meaning} (ρ = {c['spearman']:+.2f}, p = {c['p']:.3f}, anchors excluded).")
    return lines


def figure(table: pd.DataFrame) -> go.Figure:
    fig = make_subplots(rows=1, cols=2, subplot_titles=("circuit difficulty score", "GA probe NLL rise (reference)"))
    colours = table["anchor"].map({"easy": "#2ca02c", "hard": "#d62728", "": "#7f7f7f"})
    for col, x in ((1, "difficulty"), (2, "probe_rise")):
        fig.add_trace(
            go.Scatter(
                x=table[x],
                y=table["cure_nll_rise"],
                mode="markers",
                marker={"color": colours, "size": 9},
                text=[
                    f"user {u} ({a or 'not an anchor'}), {n} samples"
                    for u, a, n in zip(table["user"], table["anchor"], table["samples"], strict=True)
                ],
                hovertemplate="%{text}<br>x %{x:.3f}<br>NLL rise %{y:.4f}<extra></extra>",
                showlegend=False,
            ),
            row=1,
            col=col,
        )
        fig.update_xaxes(title_text=x.replace("_", " "), row=1, col=col)
    fig.update_yaxes(title_text="user's NLL rise after CURE-style", row=1, col=1)
    return laid_out(
        fig, "Per-user difficulty against measured forgetting (green: easy anchors, red: hard anchors)", 460
    )
