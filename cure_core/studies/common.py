"""What the four studies share: settings base, the request a study names, Original/Retrain rows,
run values and the look of their figures."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import plotly.graph_objects as go
from pydantic import BaseModel, ConfigDict

from cure_core.circuits import AttributionSettings, circuit_context
from cure_core.errors import CureError
from cure_core.evaluate import evaluation_key
from cure_core.groups import GroupSettings, default_corruption, groups_for_request
from cure_core.requests import (
    ForgetRequest,
    item_request,
    keep_request,
    load_request,
    parse_share,
    save_request,
    user_request,
)
from cure_core.unlearning.compare import reference_rows

if TYPE_CHECKING:
    from cure_core.model.recommender import Recommender
    from cure_core.unlearning.runs import RunReport
    from cure_core.workspace import Workspace


class StudySettings(BaseModel):
    """Base of every study's settings; ``quick()`` gives the minutes-long variant for tests."""

    model_config = ConfigDict(extra="forbid")

    quick_mode: bool = False

    @classmethod
    def quick(cls) -> StudySettings:
        return cls(quick_mode=True)


def resolve_request(ws: Workspace, spec: str) -> ForgetRequest:
    """``default`` (5% of users, seed 0), ``users:<share>`` (seed 0), ``genre:<name>``
    (target scope) or a saved request id; saved so every run can name it."""
    if spec == "default":
        return keep_request(ws.data.default_request())
    kind, _, value = spec.partition(":")
    if kind == "users" and value:
        request = user_request(
            ws.data.dataset, ws.data.samples, fraction=parse_share(value, "request spec users:"), seed=0
        )
    elif kind == "genre" and value:
        request = item_request(ws.data.dataset, ws.data.samples, genre=value, scope="target")
    elif not value:
        return load_request(spec)
    else:
        raise CureError(f"unknown request spec {spec!r}", "use default, users:5%, genre:Horror or a saved request id")
    save_request(request)
    return request


def model_context(original: Recommender, retrain: Recommender, **more: Any) -> dict[str, Any]:
    """What a study's cells of runs depend on: both models' weights, the text evaluation cap when
    there is one (item studies' contexts stay what they were before it), and ``more``."""
    return {
        "weights": original.card.fingerprint,
        "retrain": retrain.card.fingerprint,
        **more,
        **evaluation_key(original),
    }


def reference_points(ws: Workspace, request: ForgetRequest) -> dict[str, dict[str, Any]]:
    """Original and Retrain on ``request`` by name: the rows every method is shown next to."""
    return {row["method"]: row for row in reference_rows(ws, request)}


def run_values(report: RunReport) -> dict[str, Any]:
    """The headline numbers of one run's report (JSON-able, for a study cell)."""
    keys = (
        "test_auc",
        "forget_auc",
        "jsd_to_retrain",
        "forget_auc_gap",
        "mia_auc",
        "seconds",
        "params_updated",
        "run",
        "strength",
    )
    return {k: getattr(report, k) for k in keys}


def grouping_seconds(ws: Workspace, request: ForgetRequest, group_settings: GroupSettings) -> float:
    """Seconds to group this request's modules from scratch (attributions recomputed), the cost
    that CURE-style and its ablation pay before their first step."""
    began = time.perf_counter()
    groups_for_request(
        circuit_context(ws, request),
        AttributionSettings(corruption=default_corruption(request)),
        group_settings,
        quiet=True,
        force=True,
    )
    return time.perf_counter() - began


def laid_out(fig: go.Figure, title: str, height: int, **layout: Any) -> go.Figure:
    """``fig`` with a study figure's title, height and template, and any other ``layout``."""
    return fig.update_layout(title=title, template="plotly_white", height=height, **layout)
