"""``cure study deletion-rate``: user requests of growing size; Retrain and every method at its
chosen strength on each.

Each variant's strength is chosen **once**, on the default request (5% of users), by the
selection rule of ``selection.py`` (selection half of the forget set + validation, never test),
and then used at every rate, as a practitioner would. Time: a run's own seconds, plus, for
CURE-style and its no-circuit ablation, the module grouping of that request (timed once, when first computed). A large
request leaves fewer disjoint matched control draws than the default 5 (20% of users: 4); CURE's
noise floor then uses as many as fit, and the study says so.
"""

from __future__ import annotations

from typing import Annotated, Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from pydantic import Field

from cure_core.groups import GroupSettings, fitting_group_settings
from cure_core.studies.base import Study, StudyJob, StudyOutput
from cure_core.studies.common import (
    StudySettings,
    grouping_seconds,
    laid_out,
    model_context,
    reference_points,
    resolve_request,
    run_values,
)
from cure_core.studies.selection import chosen_run
from cure_core.studies.store import weights_key
from cure_core.studies.variants import VARIANTS, Variant, VariantLabel, is_cure_style, variants_for
from cure_core.unlearning.runs import get_run


class DeletionRateSettings(StudySettings):
    rates: list[Annotated[float, Field(gt=0, lt=1)]] = Field(
        default_factory=lambda: [0.01, 0.05, 0.10, 0.20], min_length=1, description="shares of users to forget (seed 0)"
    )
    variants: list[VariantLabel] = Field(default_factory=lambda: [v.label for v in VARIANTS], min_length=1)
    steps: int = Field(60, ge=1)
    grid_points: int | None = Field(None, ge=1)

    @classmethod
    def quick(cls) -> DeletionRateSettings:
        return cls(quick_mode=True, rates=[0.05, 0.2], variants=["GA", "CURE (NPO)"], steps=3, grid_points=2)


def chosen_strengths(job: StudyJob, variants: list[Variant]) -> dict[str, float]:
    """Each variant's strength, chosen on the default request without the test set."""
    ws, settings = job.ws, job.settings
    request = resolve_request(ws, "default")
    chosen = {}
    for v in variants:
        chosen[v.label] = job.cell(
            f"strength-{v.label}",
            lambda v=v: chosen_run(ws, request, v, settings.steps, settings.grid_points).report.strength,
        )
        job.tick(chose=v.label)
    return chosen


class DeletionRate(Study):
    name = "deletion-rate"
    settings = DeletionRateSettings

    def compute(self, job: StudyJob) -> StudyOutput:
        ws, settings = job.ws, job.settings
        original, default_retrain = ws.models.ensure_models(
            resolve_request(ws, "default"), quiet=job.quiet
        )  # strengths are chosen against this Retrain
        job.open({"data": ws.data.dataset.content_hash, **model_context(original, default_retrain)})
        variants = variants_for(settings.variants, ws.models.backend.capabilities.embedding_rows)
        job.bar(len(variants) * (1 + len(settings.rates)) + 2 * len(settings.rates))
        strengths = chosen_strengths(job, variants)
        rows = []
        for rate in settings.rates:
            rows += self.rate_rows(job, rate, variants, strengths)
        table = pd.DataFrame(rows)
        return StudyOutput(
            {"rates": rows, "strengths": [{"variant": k, "strength": s} for k, s in strengths.items()]},
            {"deletion_rate": figure(table)},
            verdict(table),
        )

    @staticmethod
    def rate_rows(
        job: StudyJob, rate: float, variants: list[Variant], strengths: dict[str, float]
    ) -> list[dict[str, Any]]:
        """Original, Retrain and every variant on the request of ``rate`` of the users."""
        ws, settings = job.ws, job.settings
        request = resolve_request(ws, f"users:{rate}")
        _, retrain = ws.models.ensure_models(request, quiet=job.quiet)  # Retrain of this rate, trained when missing
        reference = weights_key(retrain.card)
        job.tick(rate=rate, step="Retrain")
        refs = reference_points(ws, request)
        rows = [
            {
                "rate": rate,
                "request": request.id,
                "method": name,
                "strength": None,
                **{k: ref[k] for k in ("test_auc", "forget_auc", "jsd_to_retrain", "mia_auc", "seconds")},
            }
            for name, ref in refs.items()
        ]
        job.tick(rate=rate, step="references")
        group_settings = (
            fitting_group_settings(request, ws.data.samples, ws.data.sets(request))
            if any(v.needs_groups for v in variants)
            else None
        )
        groups_seconds = (
            job.cell(f"groups-seconds-{request.id}", lambda: grouping_seconds(ws, request, group_settings))
            if group_settings
            else 0.0
        )
        for v in variants:
            config = v.config(strengths[v.label], steps=settings.steps)
            values = job.cell(
                f"{request.id}-{v.label}-{reference}",
                lambda config=config: run_values(
                    get_run(ws, request, config, group_settings=group_settings, quiet=True)
                ),
            )
            seconds = values["seconds"] + (groups_seconds if v.needs_groups else 0.0)
            draws = group_settings.null_draws if group_settings and v.needs_groups else None
            rows.append(
                {
                    "rate": rate,
                    "request": request.id,
                    "method": v.label,
                    **{k: values[k] for k in ("strength", "test_auc", "forget_auc", "jsd_to_retrain", "mia_auc")},
                    "seconds": seconds,
                    "control_draws": draws,
                }
            )
            job.tick(rate=rate, method=v.label)
        return rows


def verdict(table: pd.DataFrame) -> list[str]:
    lines = []
    for rate, part in table.groupby("rate"):
        methods = part[~part["method"].isin(["Original", "Retrain"])]
        best = methods.loc[methods["jsd_to_retrain"].idxmin()]
        cure = methods[methods["method"].map(is_cure_style)]
        base = methods[~methods["method"].map(is_cure_style)]
        original, retrain = part[part["method"] == "Original"].iloc[0], part[part["method"] == "Retrain"].iloc[0]
        line = (
            f"{rate:.0%} of users: closest to Retrain is {best['method']} (JSD {best['jsd_to_retrain']:.5f}; "
            f"Original {original['jsd_to_retrain']:.5f})"
        )
        if len(cure) and len(base):
            c, b = cure.loc[cure["jsd_to_retrain"].idxmin()], base.loc[base["jsd_to_retrain"].idxmin()]
            line += (
                f"; best CURE-style {c['method']} {c['jsd_to_retrain']:.5f} vs best baseline {b['method']} "
                f"{b['jsd_to_retrain']:.5f} "
                f"({'CURE-style ahead' if c['jsd_to_retrain'] < b['jsd_to_retrain'] else 'CURE-style behind'})"
            )
        draws = methods["control_draws"].dropna()
        if len(draws) and draws.min() < GroupSettings().null_draws:
            line += (
                f"; CURE's noise floor had only {int(draws.min())} matched control draws (the retain set holds no more)"
            )
        gaps = (methods["forget_auc"] - retrain["forget_auc"]).abs()
        closest = methods.loc[gaps.idxmin()]
        line += (
            f"; by |forget AUC − Retrain's| the closest is {closest['method']} ({gaps.min():.4f}; Original "
            f"{abs(original['forget_auc'] - retrain['forget_auc']):.4f})"
            + (", where JSD and the forget-AUC gap disagree" if closest["method"] != best["method"] else "")
        )
        line += f"; Retrain took {retrain['seconds']:.0f} s, the slowest method {methods['seconds'].max():.0f} s."
        lines.append(line)
    return lines


def figure(table: pd.DataFrame) -> go.Figure:
    panels = (
        ("jsd_to_retrain", "JSD to Retrain (forget)"),
        ("test_auc", "test AUC"),
        ("mia_auc", "MIA AUC (LOSS)"),
        ("seconds", "seconds"),
    )
    fig = make_subplots(rows=2, cols=2, subplot_titles=[t for _, t in panels], vertical_spacing=0.14)
    methods = list(dict.fromkeys(table["method"]))
    for i, method in enumerate(methods):
        part = table[table["method"] == method].sort_values("rate")
        style = (
            {"color": "grey", "dash": "dash"}
            if method == "Original"
            else {"color": "black", "dash": "dash", "width": 3}
            if method == "Retrain"
            else {
                "color": f"hsl({int(360 * i / len(methods))},65%,45%)",
                "dash": "solid" if is_cure_style(method) else "dot",
            }
        )
        drawn = [
            (k, column)
            for k, (column, _) in enumerate(panels)
            if not (column == "jsd_to_retrain" and method == "Retrain")
        ]  # Retrain's JSD is 0, off the log axis
        for k, column in drawn:
            fig.add_trace(
                go.Scatter(
                    x=part["rate"] * 100,
                    y=part[column],
                    mode="lines+markers",
                    name=method,
                    legendgroup=method,
                    showlegend=k == drawn[0][0],
                    line=style,
                ),
                row=k // 2 + 1,
                col=k % 2 + 1,
            )
    rates = sorted(table["rate"].unique() * 100)
    fig.update_xaxes(title_text="users forgotten (%)", type="log", tickvals=rates, ticktext=[f"{r:g}%" for r in rates])
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_yaxes(type="log", row=2, col=2)
    return laid_out(fig, "Deletion rate: every method at the strength chosen on the 5% request", 720)
