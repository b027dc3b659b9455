"""Comparison tables and the forget/retain Pareto plot across runs (method.md §8)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd
import plotly.graph_objects as go

from cure_core.evaluate import reference_comparison
from cure_core.legacy import reported_trainable_params
from cure_core.requests import ForgetRequest
from cure_core.unlearning.runs import RunReport

if TYPE_CHECKING:
    from cure_core.workspace import Workspace

COLUMNS = {
    "model": "model",
    "method": "method",
    "mode": "mode",
    "strength": "strength",
    "test_auc": "test AUC",
    "test_logloss": "test LogLoss",
    "forget_auc": "forget AUC",
    "forget_acc": "forget ACC",
    "jsd_to_retrain": "JSD to Retrain",
    "l2_to_retrain": "L2 to Retrain",
    "mia_auc": "MIA AUC (LOSS)",
    "privleak_loss": "PrivLeak % (LOSS)",
    "seconds": "seconds",
    "trainable_params": "trainable params",
    "params_updated": "params updated",
    "peak_memory_mib": "peak MiB",
}


def reference_rows(ws: Workspace, request: ForgetRequest) -> list[dict[str, Any]]:
    """Original and Retrain as table rows, from the one cached Original-vs-Retrain reference
    (Original alone for a user's checkpoint given without a Retrain)."""
    original, retrain = ws.models.reference_models(request, quiet=True)
    reference = reference_comparison(original, retrain, request, ws.data.samples, ws.data.sets(request))
    return reference.reference_rows(
        original.card.train_seconds, retrain.card.train_seconds if retrain is not None else None
    )


def run_mode(report: RunReport) -> str:
    """``full``, or ``LoRA r=R`` for a run that trained an adapter instead of the full weights."""
    lora = report.config.lora or getattr(report, "mode", "full") != "full"
    return f"LoRA r={report.config.lora_rank}" if lora else "full"


def trainable_params(report: RunReport) -> int | None:
    """Parameters the run could change (:func:`~cure_core.legacy.reported_trainable_params`)."""
    return reported_trainable_params(report.trainable_params, report.params_total, run_mode(report) == "full")


def run_row(report: RunReport, model_label: str | None = None) -> dict[str, Any]:
    """A run as a table row: its metrics and cost, which model (the report's label, else
    ``model_label``), which mode and how many parameters were trainable."""
    return {
        **report.row(),
        "model": getattr(report, "model_label", None) or model_label,
        "mode": run_mode(report),
        "trainable_params": trainable_params(report),
    }


def comparison_table(
    reports: list[RunReport], references: list[dict[str, Any]], model_label: str | None = None
) -> pd.DataFrame:
    """Original and Retrain (``references``) then each run, in the columns of :data:`COLUMNS`;
    the ``model`` column is left out when no row names its model."""
    rows = [{**ref, "model": model_label} for ref in references] + [run_row(r, model_label) for r in reports]
    frame = pd.DataFrame(rows).reindex(columns=list(COLUMNS))
    if frame["model"].isna().all():
        frame = frame.drop(columns="model")
    return frame.rename(columns=COLUMNS)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated in (higher test AUC, lower JSD)."""
    front = []
    for i, (auc, jsd) in enumerate(points):
        dominated = any(a >= auc and j <= jsd and (a > auc or j < jsd) for k, (a, j) in enumerate(points) if k != i)
        if not dominated:
            front.append(i)
    return front


def pareto_figure(reports: list[RunReport], references: list[dict[str, Any]], title: str) -> go.Figure:
    """Forget closeness to Retrain (JSD, lower is better) against test AUC, one line per
    method over its strength; Original and Retrain as reference points; the front marked.
    Without a Retrain (a user's checkpoint given without one): :func:`utility_figure`."""
    if reports and all(r.jsd_to_retrain is None for r in reports):
        return utility_figure(reports, references, title)
    fig = _method_lines(reports, "jsd_to_retrain", "JSD %{y:.5f}")
    for ref in references:
        if ref.get("jsd_to_retrain"):
            fig.add_trace(reference_star(ref["method"], ref["test_auc"], ref["jsd_to_retrain"]))
        else:  # Retrain: JSD 0 by definition, off a log axis; its test AUC as a line
            fig.add_vline(x=ref["test_auc"], line_dash="dash", annotation_text=f"{ref['method']} test AUC")
    points = [
        (r.test_auc, r.jsd_to_retrain) for r in reports if r.test_auc is not None and r.jsd_to_retrain is not None
    ]
    front = sorted((points[i] for i in pareto_front(points)), key=lambda p: p[0])
    if front:
        fig.add_trace(
            go.Scatter(
                x=[p[0] for p in front],
                y=[p[1] for p in front],
                mode="lines",
                line={"dash": "dot", "color": "black"},
                name="Pareto front",
            )
        )
    fig.update_layout(
        title=title,
        xaxis_title="test AUC (higher is better)",
        yaxis_title="JSD to Retrain on the forget set (lower is better)",
        yaxis_type="log",
        template="plotly_white",
    )
    return fig


def reference_star(name: str, x: float, y: float, **style: Any) -> go.Scatter:
    """A reference model (Original, Retrain) as one star marker beside the methods' lines."""
    return go.Scatter(x=[x], y=[y], mode="markers", marker={"symbol": "star", "size": 14, **style}, name=name)


def _method_lines(reports: list[RunReport], y: str, hover: str) -> go.Figure:
    """A figure with one line per method over its strengths: test AUC against the report field ``y``."""
    fig = go.Figure()
    for runs in _by_method(reports):
        fig.add_trace(
            go.Scatter(
                x=[r.test_auc for r in runs],
                y=[getattr(r, y) for r in runs],
                mode="lines+markers",
                name=runs[0].label,
                text=[f"strength {r.strength:g}" for r in runs],
                hovertemplate=f"%{{fullData.name}}<br>%{{text}}<br>test AUC %{{x:.4f}}<br>{hover}<extra></extra>",
            )
        )
    return fig


def utility_figure(reports: list[RunReport], references: list[dict[str, Any]], title: str) -> go.Figure:
    """Forget AUC against test AUC, one line per method over its strength, Original as a point:
    the plot when there is no Retrain to measure the distance to (no front: without Retrain a
    lower forget AUC is not known to be closer to the exact answer)."""
    fig = _method_lines(reports, "forget_auc", "forget AUC %{y:.4f}")
    for ref in references:
        fig.add_trace(reference_star(ref["method"], ref["test_auc"], ref["forget_auc"]))
    fig.update_layout(
        title=f"{title} — no Retrain given: distances to Retrain unavailable",
        xaxis_title="test AUC (higher is better)",
        yaxis_title="forget AUC",
        template="plotly_white",
    )
    return fig


def _by_method(reports: list[RunReport]) -> list[list[RunReport]]:
    """The reports of each method (in order of first appearance), by strength."""
    by_method: dict[str, list[RunReport]] = {}
    for r in reports:
        by_method.setdefault(r.method, []).append(r)
    return [sorted(runs, key=lambda r: r.strength) for runs in by_method.values()]
