"""Finished unlearning runs: evaluated next to Original and Retrain, saved under ``cache/runs``.

``cache/runs/<id>/`` holds ``model/`` (the unlearned model: see :mod:`~cure_core.unlearning.
run_store`), ``report.json`` (every method.md §8 metric, cost and settings) and ``history.json``
(the per-step curve). The id hashes the Original's and the Retrain's weights (the report
compares with Retrain), the request and the config, so a run with the same inputs is found
again instead of recomputed, and a retrained reference never serves an old report. A user's
checkpoint given without a Retrain is a run too: its id has ``"retrain": None`` and its report
says Retrain is unavailable (the model's own utility and forget-vs-holdout MIA still measured).

Over several processes (``accelerate launch --multi_gpu --num_processes N``: a
:class:`~cure_core.runtime.ProcessGroup`) rank 0 trains or loads the models first; every rank
takes part in the groups' attributions (sharded as under ``torchrun``: :mod:`analysis.distributed`)
and in the unlearning steps; rank 0 alone evaluates and writes the run, and the others receive
its report.
"""

from __future__ import annotations

import json
import platform
from typing import TYPE_CHECKING, Any

import torch
from pydantic import Field

from cure_core.cache_keys import cache_key
from cure_core.circuits import AttributionSettings, circuit_context
from cure_core.comparison import Comparison
from cure_core.data.samples import Samples
from cure_core.evaluate import compare_to_retrain, evaluation_key
from cure_core.groups import GroupSettings, ModuleGroups, default_corruption, fitting_group_settings, groups_for_request
from cure_core.model.recommender import Recommender
from cure_core.progress import Progress, ProgressFn
from cure_core.requests import ForgetRequest, RequestSets, keep_request
from cure_core.runtime import ONE_PROCESS, Runtime
from cure_core.unlearning.methods import METHODS, UnlearnConfig
from cure_core.unlearning.run_store import MERGED, checkpoint_archive, load_history, run_dir, save_run
from cure_core.unlearning.runner import StepCallback, UnlearnResult, unlearn

if TYPE_CHECKING:
    from cure_core.workspace import Workspace

__all__ = ["RunReport", "checkpoint_archive", "evaluate_run", "get_run", "load_history", "load_report", "run_dir"]


def run_id(
    original: Recommender, retrain: Recommender | None, request: ForgetRequest, config_json: str, groups_key: str = ""
) -> str:
    """The run's cache id: everything that decides its report, the reference it is compared with
    included (``None`` for a user's checkpoint without a Retrain), and a text model's evaluation
    cap (item models' ids stay what they were before it). The models enter by their card's
    ``fingerprint`` (:class:`~cure_core.model.card.ModelCard`)."""
    spec = {
        "weights": original.card.fingerprint,
        "retrain": retrain.card.fingerprint if retrain is not None else None,
        "request": request.id,
        "config": json.loads(config_json),
        "groups": groups_key,
        **evaluation_key(original),
    }
    return f"{json.loads(config_json)['method']}-{cache_key('run', spec)}"


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
    mode: str = "full"
    trainable_params: int | None = None
    model_label: str | None = None

    @property
    def mode_label(self) -> str:
        """``full`` or ``LoRA r=<rank>``: what the method updated."""
        return f"LoRA r={self.config.lora_rank}" if self.config.lora else "full"

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
    result: UnlearnResult,
    retrain: Recommender | None,
    request: ForgetRequest,
    samples: Samples,
    sets: RequestSets,
    model_label: str | None = None,
) -> RunReport:
    """method.md §8 next to Retrain (``None``: a user's checkpoint without one, every distance
    to Retrain unavailable), plus cost (wall time, parameters updated, peak memory), the mode
    and the parameters the method could train; ``model_label`` names the model for printing."""
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
        mode=result.mode,
        trainable_params=result.trainable_params,
        model_label=model_label,
    )


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
    save_merged: bool = False,
    runtime: Runtime = ONE_PROCESS,
) -> RunReport:
    """The report of a run, from ``cache/runs`` or computed (Retrain and groups first if needed).

    A user's checkpoint without a Retrain runs too (reported with Retrain unavailable).
    ``save_merged``: a LoRA run also writes ``merged/``; a cached run without it is run again,
    since only a run in memory holds the adapter to merge. ``runtime``: the processes that run
    it together (each on its own device)."""
    main = runtime.is_main
    quiet = quiet or not main
    with runtime.main_first():
        original, retrain = ws.models.reference_models(request, quiet=quiet)
    if runtime.device is not None:
        original.model.to(runtime.device)
    sets = ws.data.sets(request)
    groups = None
    groups_key = ""
    if METHODS[config.method].needs_groups:
        attribution = attribution or AttributionSettings(corruption=default_corruption(request))
        group_settings = group_settings or fitting_group_settings(request, ws.data.samples, sets)
        groups_key = attribution.model_dump_json() + group_settings.model_dump_json()
    run = run_id(original, retrain, request, config.id_json(), groups_key)
    cached = None if force or not main else load_report(run)
    if cached is not None and save_merged and config.lora and not (run_dir(run) / MERGED).is_dir():
        cached = None
    cached = runtime.share(cached)
    if cached is not None:
        return cached
    if groups_key:  # every process takes part: the attributions are sharded over them (analysis.distributed)
        ctx = circuit_context(ws, request, runtime=runtime)
        groups = groups_for_request(ctx, attribution, group_settings, quiet=quiet)  # type: ignore[arg-type]
    bar = Progress(config.steps, f"{config.method} (strength {config.strength:g})", progress, quiet)

    def on_step(row: dict[str, Any]) -> None:
        bar.update(1, forget_loss=row["forget_loss"])
        if callback is not None:
            callback(row)

    try:
        result = unlearn(original, ws.data.samples, sets, request, config, groups, on_step, runtime)
    finally:
        bar.close()
    report = (
        _finish(run, result, retrain, request, ws, sets, groups, save_merged=save_merged and config.lora)
        if main
        else None
    )
    return runtime.share(report)


def _finish(
    run: str,
    result: UnlearnResult,
    retrain: Recommender | None,
    request: ForgetRequest,
    ws: Workspace,
    sets: RequestSets,
    groups: ModuleGroups | None,
    save_merged: bool = False,
) -> RunReport:
    """Evaluate the finished run next to Retrain and write it to the cache."""
    report = evaluate_run(result, retrain, request, ws.data.samples, sets, model_label=ws.models.label)
    report.run = run
    if groups is not None:
        report.group_warnings = groups.warnings
        report.separability = groups.separability
    keep_request(request)  # the run names it by id
    save_run(run, result, report, ws.data.samples, save_merged=save_merged)
    return report
