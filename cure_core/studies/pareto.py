"""``cure study pareto``: every method over its strength grid, several seeds, on one request.

Forget closeness to Retrain (JSD on the forget set, and |forget AUC − Retrain's|) against test
AUC, mean ± std over the unlearning seeds; the Pareto front (higher test AUC, lower JSD) is
marked on the means. No strength is chosen here, so the test set is only reported, never tuned on.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from pydantic import Field

from cure_core.settings import Seed
from cure_core.studies.base import Study, StudyJob, StudyOutput
from cure_core.studies.common import StudySettings, laid_out, reference_points, resolve_request, run_values
from cure_core.studies.variants import VARIANTS, VariantLabel, is_cure_style, variants_for
from cure_core.unlearning.compare import pareto_front, reference_star
from cure_core.unlearning.runs import get_run


class ParetoSettings(StudySettings):
    request: str = "default"
    variants: list[VariantLabel] = Field(default_factory=lambda: [v.label for v in VARIANTS], min_length=1)
    seeds: list[Seed] = Field(
        default_factory=lambda: [0, 1, 2], min_length=1, description="unlearning seeds (batch order)"
    )
    steps: int = Field(60, ge=1)
    grid_points: int | None = Field(
        None, ge=1, description="first strengths of each variant's grid (None: the whole grid)"
    )

    @classmethod
    def quick(cls) -> ParetoSettings:
        return cls(quick_mode=True, variants=["GA", "NPO", "CURE (NPO)"], seeds=[0, 1], steps=3, grid_points=2)


class Pareto(Study):
    name = "pareto"
    settings = ParetoSettings

    def compute(self, job: StudyJob) -> StudyOutput:
        ws, settings = job.ws, job.settings
        request = resolve_request(ws, settings.request)
        job.open_on(request)
        runs = [
            (v, s, seed)
            for v in variants_for(settings.variants, ws.models.backend.capabilities.embedding_rows)
            for s in v.grid()[: settings.grid_points]
            for seed in settings.seeds
        ]
        job.bar(len(runs), "pareto runs")
        rows = []
        for v, strength, seed in runs:
            values = job.cell(
                f"{v.label}-{strength:g}-seed{seed}",
                lambda v=v, strength=strength, seed=seed: run_values(
                    get_run(ws, request, v.config(strength, seed=seed, steps=settings.steps), quiet=True)
                ),
            )
            rows.append({"variant": v.label, "strength": strength, "seed": seed, **values})
            job.tick(run=f"{v.label} {strength:g} seed {seed}")
        refs = reference_points(ws, request)
        table = summarize(pd.DataFrame(rows))
        return StudyOutput(
            {
                "runs": rows,
                "summary": table.to_dict("records"),
                "references": [{"model": k, **v} for k, v in refs.items()],
            },
            {"pareto": pareto_figure(table, refs, request.id)},
            verdict(table, refs),
        )


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per (variant, strength), with the Pareto front on the means."""
    runs = runs.assign(abs_gap=runs["forget_auc_gap"].abs())
    grouped = runs.groupby(["variant", "strength"], sort=False)
    table = grouped[["test_auc", "jsd_to_retrain", "abs_gap", "mia_auc", "seconds"]].agg(["mean", "std"])
    table.columns = [f"{a}_{b}" for a, b in table.columns]
    table = table.reset_index().assign(seeds=grouped.size().to_numpy())
    front = pareto_front(list(zip(table["test_auc_mean"], table["jsd_to_retrain_mean"], strict=True)))
    table["on_front"] = np.isin(np.arange(len(table)), front)
    return table


def verdict(table: pd.DataFrame, refs: dict[str, dict[str, Any]]) -> list[str]:
    """Plain lines: who is on the front, and CURE vs the best baseline within a 0.005 test-AUC budget."""
    lines = [
        "Pareto front (mean over seeds): "
        f"{', '.join(f'{r.variant} @ {r.strength:g}' for r in table[table['on_front']].itertuples())}."
    ]
    budget = refs["Original"]["test_auc"] - 0.005
    ok = table[table["test_auc_mean"] >= budget]
    cure, base = ok[ok["variant"].map(is_cure_style)], ok[~ok["variant"].map(is_cure_style)]
    if len(cure) and len(base):
        c, b = cure.loc[cure["jsd_to_retrain_mean"].idxmin()], base.loc[base["jsd_to_retrain_mean"].idxmin()]
        lines.append(
            f"Within test AUC ≥ Original − 0.005 ({budget:.4f}), lowest JSD to Retrain: {c['variant']} "
            f"@ {c['strength']:g}: {_spread(c, 'jsd_to_retrain')} vs best baseline {b['variant']} @ "
            f"{b['strength']:g}: {_spread(b, 'jsd_to_retrain')}; Original {refs['Original']['jsd_to_retrain']:.5f}. "
            f"{_outcome(c, b)}."
        )
    else:
        lines.append("No CURE-style or no baseline run stays within test AUC ≥ Original − 0.005.")
    if len(ok):
        lines.append(two_rankings(ok, refs))
    return lines


def _spread(row: pd.Series, column: str) -> str:
    """``mean ± std`` over seeds, or the mean alone when one seed gave no spread."""
    mean, std = row[f"{column}_mean"], row[f"{column}_std"]
    return f"{mean:.5f}" if pd.isna(std) else f"{mean:.5f} ± {std:.5f}"


def _outcome(cure: pd.Series, base: pd.Series) -> str:
    """CURE-style's best against the best baseline by JSD: a win only beyond both seed spreads."""
    c_mean, c_std, b_mean, b_std = (row[f"jsd_to_retrain_{k}"] for row in (cure, base) for k in ("mean", "std"))
    if c_mean >= b_mean:
        return "CURE-style loses"
    if pd.isna(c_std) or pd.isna(b_std):
        return "CURE-style is ahead on one seed (no spread measured)"
    return "CURE-style wins" if c_mean + c_std < b_mean - b_std else "CURE-style is ahead within the seed spread"


def two_rankings(ok: pd.DataFrame, refs: dict[str, dict[str, Any]]) -> str:
    """Who leads by JSD to Retrain and who by the forget-AUC gap (within the test-AUC budget),
    and whether they agree: JSD alone can crown a method that leaves forget AUC where it was."""
    by_jsd, by_gap = ok.loc[ok["jsd_to_retrain_mean"].idxmin()], ok.loc[ok["abs_gap_mean"].idxmin()]
    original_gap = refs["Original"].get("forget_auc_gap")
    gap_text = f" (Original's gap {abs(original_gap):.4f})" if original_gap is not None else ""
    lead = f"{by_jsd['variant']} @ {by_jsd['strength']:g}"
    if (by_jsd["variant"], by_jsd["strength"]) == (by_gap["variant"], by_gap["strength"]):
        return f"Both rankings agree: {lead} has the lowest JSD and the smallest |forget AUC − Retrain's|{gap_text}."
    return (
        f"The rankings disagree: lowest JSD {lead} (|forget AUC gap| {by_jsd['abs_gap_mean']:.4f}), smallest "
        f"|forget AUC − Retrain's| {by_gap['variant']} @ {by_gap['strength']:g} ({by_gap['abs_gap_mean']:.4f}, JSD "
        f"{by_gap['jsd_to_retrain_mean']:.5f}){gap_text}."
    )


def pareto_figure(table: pd.DataFrame, refs: dict[str, dict[str, Any]], request_id: str) -> go.Figure:
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("JSD to Retrain on forget", "|forget AUC − Retrain's|"),
        horizontal_spacing=0.1,
    )
    for i, (label, part) in enumerate(table.groupby("variant", sort=False)):
        colour = f"hsl({int(360 * i / max(1, table['variant'].nunique()))},65%,45%)"
        for col, y in ((1, "jsd_to_retrain"), (2, "abs_gap")):
            fig.add_trace(
                go.Scatter(
                    x=part["test_auc_mean"],
                    y=part[f"{y}_mean"],
                    mode="lines+markers",
                    name=label,
                    legendgroup=label,
                    showlegend=col == 1,
                    line={"color": colour, "dash": "solid" if is_cure_style(label) else "dot"},
                    error_x={"type": "data", "array": part["test_auc_std"].fillna(0), "thickness": 1},
                    error_y={"type": "data", "array": part[f"{y}_std"].fillna(0), "thickness": 1},
                    text=[f"strength {s:g}, {n} seeds" for s, n in zip(part["strength"], part["seeds"], strict=True)],
                    hovertemplate="%{fullData.name}<br>%{text}<br>test AUC %{x:.4f}<br>%{y:.5f}<extra></extra>",
                ),
                row=1,
                col=col,
            )
    front = table[table["on_front"]].sort_values("test_auc_mean")
    fig.add_trace(
        go.Scatter(
            x=front["test_auc_mean"],
            y=front["jsd_to_retrain_mean"],
            mode="markers+lines",
            name="Pareto front",
            marker={"symbol": "circle-open", "size": 14, "color": "black"},
            line={"color": "black", "width": 1},
        ),
        row=1,
        col=1,
    )
    original = refs["Original"]
    fig.add_trace(reference_star("Original", original["test_auc"], original["jsd_to_retrain"], color="grey"), 1, 1)
    if original.get("forget_auc_gap") is not None:
        star = reference_star("Original", original["test_auc"], abs(original["forget_auc_gap"]), color="grey")
        fig.add_trace(star.update(showlegend=False), 1, 2)
    for col in (1, 2):
        fig.add_vline(
            x=refs["Retrain"]["test_auc"],
            line_dash="dash",
            line_color="black",
            annotation_text="Retrain test AUC",
            row=1,
            col=col,
        )
        fig.update_xaxes(title_text="test AUC (higher is better)", row=1, col=col)
    fig.update_yaxes(title_text="lower is closer to Retrain", type="log", row=1, col=1)
    return laid_out(fig, f"Forget/retain trade-off on {request_id}: mean ± std over seeds (Retrain: JSD 0, gap 0)", 520)
