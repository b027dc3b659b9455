"""``cure study stability``: is the circuit split reproducible, or a one-off?

The forget and retain circuits (top-n edges) and the module groups are recomputed (a) on models
trained with other seeds (same data and recipe) and (b) on other resamples of the attribution
prompts (same model). Per pair: Jaccard of the top-n edges of each set, and of each group.

Across model seeds a head's *index* carries no meaning (heads of independently trained models
are permutation-symmetric), so edge and group Jaccard across seeds measure identity, which is
expected to be low even if the *kind* of split is stable; separability and group sizes are the
seed-comparable figures. Prompt resamples compare the same model, where identity is meaningful.
Group Jaccard is over heads and MLPs only: forget-specific embedding rows are picked by how the
data uses them, so they are the same in every run by construction and are counted apart.
Separability is reported unweighted and importance-weighted (:mod:`cure_core.separability`).
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from pydantic import Field

from analysis.circuit import top_n
from analysis.compare import jaccard
from cure_core.circuits import AttributionSettings, circuit_context, get_attribution
from cure_core.groups import GROUPS, default_corruption, fitting_group_settings, groups_for_request
from cure_core.settings import Seed
from cure_core.studies.base import Study, StudyJob, StudyOutput
from cure_core.studies.common import StudySettings, laid_out, resolve_request
from cure_core.studies.store import weights_key

if TYPE_CHECKING:
    from cure_core.workspace import Workspace

SPLIT_GROUPS = ("forget-specific", "retain-specific", "task-shared")


class StabilitySettings(StudySettings):
    requests: list[str] = Field(default_factory=lambda: ["default", "genre:Children's"], min_length=1)
    model_seeds: list[Seed] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    resamples: list[Seed] = Field(
        default_factory=lambda: [0, 1, 2], min_length=1, description="seeds of the attribution prompt draw"
    )
    top_n: int = Field(100, ge=1)
    n_prompts: int = Field(512, ge=1)

    @classmethod
    def quick(cls) -> StabilitySettings:
        return cls(quick_mode=True, requests=["default"], model_seeds=[0, 1], resamples=[0, 1], top_n=20, n_prompts=64)


def modules_only(names: list[str]) -> set[str]:
    """Heads and MLPs of a group, without embedding rows (``u:<id>``, ``i:<id>``)."""
    return {n for n in names if ":" not in n}


def rows_only(names: list[str]) -> set[str]:
    """The embedding rows of a group."""
    return set(names) - modules_only(names)


def split_of(
    ws: Workspace, request_spec: str, model_seed: int, resample: int, settings: StabilitySettings
) -> dict[str, Any]:
    """Top-n forget/retain edges, group members and separability of one (model seed, resample)."""
    seeded = ws.with_recipe(ws.models.backend.recipe.model_copy(update={"seed": model_seed}))
    request = resolve_request(seeded, request_spec)
    ctx = circuit_context(seeded, request)
    attribution = AttributionSettings(
        corruption=default_corruption(request), n_prompts=settings.n_prompts, seed=resample
    )
    edges = {}
    for set_name in ("forget", "retain"):
        result = get_attribution(ctx, set_name, attribution, quiet=True)
        edges[set_name] = top_n(result.shape, result.scores, settings.top_n).edge_names()
    groups = groups_for_request(
        ctx, attribution, fitting_group_settings(request, seeded.data.samples, seeded.data.sets(request)), quiet=True
    )
    return {
        "request": request.id,
        "edges": edges,
        "groups": {g: groups.members(g) for g in GROUPS},
        "separability": groups.separability["separability"],
        "separability_weighted": groups.separability["separability_weighted"],
        "significant": groups.separability["significant_modules"],
        "beyond_noise": groups.beyond_noise,
        "beyond_noise_weighted": groups.beyond_noise_weighted,
    }


class Stability(Study):
    name = "stability"
    settings = StabilitySettings

    def compute(self, job: StudyJob) -> StudyOutput:
        ws, settings = job.ws, job.settings
        job.open({"data": ws.data.dataset.content_hash, "recipe": ws.models.backend.recipe.cache_spec()})
        base_seed, base_resample = settings.model_seeds[0], settings.resamples[0]
        axes = {
            "model seed": [(s, base_resample) for s in settings.model_seeds],
            "prompt resample": [(base_seed, r) for r in settings.resamples],
        }
        combos = list(dict.fromkeys(c for combos in axes.values() for c in combos))
        job.bar(len(settings.requests) * len(combos))
        splits: dict[tuple[str, int, int], dict[str, Any]] = {}
        for spec in settings.requests:
            for seed, resample in combos:  # models of other seeds are trained on first use (cached)
                model = weights_key(
                    ws.with_recipe(ws.models.backend.recipe.model_copy(update={"seed": seed}))
                    .models.original(quiet=job.quiet)
                    .card
                )
                splits[(spec, seed, resample)] = job.cell(  # "-weighted": cells from before it are recomputed
                    f"{spec}-seed{seed}-resample{resample}-{model}-weighted",
                    lambda spec=spec, seed=seed, resample=resample: split_of(ws, spec, seed, resample, settings),
                )
                job.tick(request=spec, seed=seed, resample=resample)
        pairs, per_run = [], []
        for spec in settings.requests:
            per_run += [run_row(spec, seed, resample, splits[(spec, seed, resample)]) for seed, resample in combos]
            for axis, members in axes.items():
                pairs += [
                    pair_row(spec, axis, a, b, splits[(spec, *a)], splits[(spec, *b)])
                    for a, b in itertools.combinations(members, 2)
                ]
        pair_table, run_table = pd.DataFrame(pairs), pd.DataFrame(per_run)
        return StudyOutput(
            {"pairs": pairs, "runs": per_run}, {"stability": figure(pair_table)}, verdict(pair_table, run_table)
        )


def run_row(spec: str, seed: int, resample: int, split: dict[str, Any]) -> dict[str, Any]:
    """Group sizes and separability of one (model seed, resample)."""
    counts = {f"n {g} (heads/MLPs)": len(modules_only(split["groups"][g])) for g in SPLIT_GROUPS}
    rows = len(rows_only(split["groups"]["forget-specific"]))
    return {
        "request": split["request"],
        "spec": spec,
        "model_seed": seed,
        "resample": resample,
        "separability": split["separability"],
        "separability_weighted": split["separability_weighted"],
        "beyond_noise": split["beyond_noise"],
        "beyond_noise_weighted": split["beyond_noise_weighted"],
        "beyond_null": split["significant"],
        **counts,
        "n forget rows": rows,
    }


def pair_row(
    spec: str, axis: str, a: tuple[int, int], b: tuple[int, int], x: dict[str, Any], y: dict[str, Any]
) -> dict[str, Any]:
    """Jaccard of the top-n edges and of each group between two runs."""
    row = {"request": x["request"], "spec": spec, "axis": axis, "pair": f"{a} vs {b}"}
    row.update(
        {f"{s} edges": jaccard(set(x["edges"][s]), set(y["edges"][s]), empty=None) for s in ("forget", "retain")}
    )
    # a group empty in both runs is missing (None), not agreement: the verdict says so
    row.update(
        {g: jaccard(modules_only(x["groups"][g]), modules_only(y["groups"][g]), empty=None) for g in SPLIT_GROUPS}
    )
    row["forget rows"] = jaccard(
        rows_only(x["groups"]["forget-specific"]), rows_only(y["groups"]["forget-specific"]), empty=None
    )
    return row


def _word(value: float) -> str:
    return "stable" if value >= 0.7 else "partly stable" if value >= 0.4 else "unstable"


def verdict(pairs: pd.DataFrame, runs: pd.DataFrame) -> list[str]:
    lines = []
    for spec, part in pairs.groupby("spec", sort=False):
        for axis, rows in part.groupby("axis", sort=False):
            edges = rows[["forget edges", "retain edges"]].mean()
            groups = {g: rows[g].dropna().mean() for g in SPLIT_GROUPS}
            text = ", ".join(
                f"{g} {v:.2f}" if not np.isnan(v) else f"{g} empty in every run" for g, v in groups.items()
            )
            lines.append(
                f"{spec}, across {axis}s: top-n edge Jaccard forget {edges['forget edges']:.2f} / retain "
                f"{edges['retain edges']:.2f} ({_word(edges['forget edges'])}); group Jaccard over "
                f"heads/MLPs: {text}."
            )
        mine = runs[runs["spec"] == spec]
        lines.append(
            f"{spec}: forget-specific heads/MLPs per run {mine['n forget-specific (heads/MLPs)'].min()}–"
            f"{mine['n forget-specific (heads/MLPs)'].max()}, task-shared "
            f"{mine['n task-shared (heads/MLPs)'].min()}–{mine['n task-shared (heads/MLPs)'].max()}; "
            f"forget-specific embedding rows {mine['n forget rows'].min()}–{mine['n forget rows'].max()} "
            "(chosen by data usage, identical by construction)."
        )
        plain, weighted = mine["separability"], mine["separability_weighted"]
        lines.append(
            f"{spec}: separability {plain.min():.2f}–{plain.max():.2f} over every model seed and resample "
            f"({_noise(mine['beyond_noise'])}; ≈ 1 means no more different than matched controls), "
            f"importance-weighted {weighted.min():.2f}–{weighted.max():.2f} ({_noise(mine['beyond_noise_weighted'])})."
        )
    return lines


def _noise(beyond: pd.Series) -> str:
    """How many runs' separability is beyond noise, in words."""
    if beyond.all():
        return "beyond noise in every run"
    if not beyond.any():
        return "within noise in every run"
    return f"beyond noise in {int(beyond.sum())} of {len(beyond)} runs"


def figure(pairs: pd.DataFrame) -> go.Figure:
    columns = ["forget edges", "retain edges", *SPLIT_GROUPS]  # groups: heads/MLPs only
    specs = list(dict.fromkeys(pairs["spec"]))
    fig = make_subplots(rows=1, cols=len(specs), subplot_titles=specs, shared_yaxes=True)
    for k, spec in enumerate(specs):
        part = pairs[pairs["spec"] == spec]
        for axis, colour in (("model seed", "#d62728"), ("prompt resample", "#1f77b4")):
            rows = part[part["axis"] == axis]
            fig.add_trace(
                go.Box(
                    x=np.repeat(columns, len(rows)),
                    y=rows[columns].to_numpy().T.ravel(),
                    name=axis,
                    marker_color=colour,
                    boxpoints="all",
                    legendgroup=axis,
                    showlegend=k == 0,
                ),
                row=1,
                col=k + 1,
            )
    laid_out(fig, "Stability: Jaccard per pair of runs (1 = identical)", 460, boxmode="group", yaxis_title="Jaccard")
    fig.update_yaxes(range=[0, 1.05])
    return fig
