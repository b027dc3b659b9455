"""Finished unlearning runs: evaluated next to Original and Retrain, saved under ``cache/runs``.

``cache/runs/<id>/`` holds ``model/`` (the unlearned checkpoint, same format as any cached
model), ``report.json`` (every method.md §8 metric, cost and settings) and ``history.json``
(the per-step curve). The id hashes the Original's and the Retrain's weights (the report
compares with Retrain), the request and the config, so a run with the same inputs is found
again instead of recomputed, and a retrained reference never serves an old report.

Under ``accelerate launch --num_processes N`` (:mod:`~cure_core.unlearning.parallel`) rank 0
trains or loads the models first; every rank takes part in the groups' attributions (sharded
as under ``torchrun``: :mod:`analysis.distributed`) and in the unlearning steps; rank 0 alone
evaluates and writes the run, and the others receive its report.
"""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from pydantic import Field

from cure_core.cache import atomic_write_json, cache_dir
from cure_core.circuits import AttributionSettings, circuit_context
from cure_core.comparison import Comparison
from cure_core.data.samples import Samples
from cure_core.evaluate import compare_to_retrain
from cure_core.groups import GroupSettings, ModuleGroups, default_corruption, fitting_group_settings, groups_for_request
from cure_core.model.recommender import Recommender
from cure_core.model.store import save_recommender
from cure_core.progress import Progress, ProgressFn
from cure_core.requests import ForgetRequest, RequestSets
from cure_core.unlearning.methods import METHODS, UnlearnConfig
from cure_core.unlearning.parallel import data_parallel, main_first
from cure_core.unlearning.runner import StepCallback, UnlearnResult, unlearn

if TYPE_CHECKING:
    from cure_core.workspace import Workspace


def run_id(
    original: Recommender, retrain: Recommender, request: ForgetRequest, config_json: str, groups_key: str = ""
) -> str:
    """The run's cache id: everything that decides its report, the reference it is compared with included."""
    spec = {
        "weights": original.meta.get("weights_sha256"),
        "retrain": retrain.meta.get("weights_sha256"),
        "request": request.id,
        "config": json.loads(config_json),
        "groups": groups_key,
    }
    return (
        f"{json.loads(config_json)['method']}-"
        f"{hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]}"
    )


def run_dir(run: str) -> Path:
    return cache_dir("runs") / run


class RunReport(Comparison):
    """A finished run next to Retrain (method.md §8), with its cost and settings."""

    method: str
    strength: float
    config: UnlearnConfig
    seconds: float
    params_updated: int
    params_total: int
    peak_memory_mib: float
    peak_memory_kind: str
    groups_used: dict[str, int] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    group_warnings: list[str] = Field(default_factory=list)
    separability: dict[str, Any] | None = None
    run: str | None = None

    @property
    def label(self) -> str:
        """The method's name in words (its id when no longer registered)."""
        return METHODS[self.method].label if self.method in METHODS else self.method

    def row(self) -> dict[str, Any]:
        """This run as a row of the comparison tables."""
        return {
            **super().row(),
            "method": self.label,
            "strength": self.strength,
            "seconds": self.seconds,
            "params_updated": self.params_updated,
            "peak_memory_mib": self.peak_memory_mib,
        }


def evaluate_run(
    result: UnlearnResult, retrain: Recommender, request: ForgetRequest, samples: Samples, sets: RequestSets
) -> RunReport:
    """method.md §8 next to Retrain, plus cost (wall time, parameters updated, peak memory)."""
    comparison = compare_to_retrain(result.model, retrain, request, samples, sets, name=result.config.method)
    return RunReport(
        **dict(comparison),
        method=result.config.method,
        strength=result.config.strength,
        config=result.config,
        seconds=result.seconds,
        params_updated=result.params_updated,
        params_total=result.params_total,
        peak_memory_mib=result.peak_memory_mib,
        peak_memory_kind="CUDA max allocated" if torch.cuda.is_available() else "process peak RSS",
        groups_used=result.groups_used,
        versions={"torch": torch.__version__, "python": platform.python_version()},
    )


def save_run(run: str, result: UnlearnResult, report: RunReport, samples: Samples) -> Path:
    """Write checkpoint, report and history atomically (the report last: it marks completion)."""
    folder = run_dir(run)
    meta = {
        "run": run,
        "method": result.config.method,
        "request": report.request,
        "metrics": {"test_auc": report.test_auc, "forget_auc": report.forget_auc},
    }
    save_recommender(result.model, folder / "model", samples, meta)
    atomic_write_json(folder / "history.json", result.history)
    atomic_write_json(folder / "report.json", report.model_dump())
    return folder


def load_report(run: str) -> RunReport | None:
    """A finished run's report, or ``None`` (missing or unreadable: it will be recomputed)."""
    path = run_dir(run) / "report.json"
    try:
        return RunReport.model_validate_json(path.read_text())
    except (OSError, ValueError):
        return None


def get_run(
    ws: Workspace,
    request: ForgetRequest,
    config: UnlearnConfig,
    attribution: AttributionSettings | None = None,
    group_settings: GroupSettings | None = None,
    progress: ProgressFn | None = None,
    callback: StepCallback | None = None,
    quiet: bool = False,
    force: bool = False,
) -> RunReport:
    """The report of a run, from ``cache/runs`` or computed (Retrain and groups first if needed)."""
    parallel = data_parallel()
    main = parallel is None or parallel.is_main
    quiet = quiet or not main
    with main_first(parallel):
        original, retrain = ws.ensure_models(request, quiet=quiet)
    if parallel is not None:
        original.model.to(parallel.device)
    sets = ws.sets(request)
    groups = None
    groups_key = ""
    if METHODS[config.method].needs_groups:
        attribution = attribution or AttributionSettings(corruption=default_corruption(request))
        group_settings = group_settings or fitting_group_settings(request, ws.samples, sets)
        groups_key = attribution.model_dump_json() + group_settings.model_dump_json()
    run = run_id(original, retrain, request, config.id_json(), groups_key)
    cached = None if force or not main else load_report(run)
    if parallel is not None:
        cached = parallel.share(cached)
    if cached is not None:
        return cached
    if groups_key:  # every process takes part: the attributions are sharded over them (analysis.distributed)
        ctx = circuit_context(ws, request, device=str(parallel.device) if parallel is not None else None)
        groups = groups_for_request(ctx, attribution, group_settings, quiet=quiet)  # type: ignore[arg-type]
    bar = Progress(config.steps, f"{config.method} (strength {config.strength:g})", progress, quiet)

    def on_step(row: dict[str, Any]) -> None:
        bar.update(1, forget_loss=row["forget_loss"])
        if callback is not None:
            callback(row)

    try:
        result = unlearn(original, ws.samples, sets, request, config, groups, on_step, parallel)
    finally:
        bar.close()
    report = _finish(run, result, retrain, request, ws.samples, sets, groups) if main else None
    return report if parallel is None else parallel.share(report)


def _finish(
    run: str,
    result: UnlearnResult,
    retrain: Recommender,
    request: ForgetRequest,
    samples: Samples,
    sets: RequestSets,
    groups: ModuleGroups | None,
) -> RunReport:
    """Evaluate the finished run next to Retrain and write it to the cache."""
    report = evaluate_run(result, retrain, request, samples, sets)
    report.run = run
    if groups is not None:
        report.group_warnings = groups.warnings
        report.separability = groups.separability
    save_run(run, result, report, samples)
    return report


def load_history(run: str) -> list[dict[str, Any]]:
    """A finished run's per-step curve ([] when missing)."""
    try:
        return json.loads((run_dir(run) / "history.json").read_text())
    except (OSError, json.JSONDecodeError):
        return []


def checkpoint_archive(run: str) -> bytes:
    """The unlearned checkpoint folder as a zip, for downloads."""
    import io
    import zipfile

    folder = run_dir(run) / "model"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.iterdir()):
            archive.write(path, arcname=f"{run}/{path.name}")
    return buffer.getvalue()
