"""The folder of a finished run, ``cache/runs/<id>/``: writing it and reading its files back.

``model/`` holds the unlearned model as its backend saves one (an item model as every cached
model; a model prompted in words as a Hugging Face folder that loads again as ``--model``), or
a LoRA run's new adapter alone (its base is the Original). On
request a LoRA run also writes ``merged/``, the adapter merged into a copy of the model (not
part of the run id: the same run with or without it). ``history.json`` is the per-step curve
and ``report.json`` the report, written last: it marks the run complete. Every folder and file
is written atomically (:mod:`cure_core.cache`), and nothing is written outside ``cache/runs``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cure_core.cache import atomic_directory, atomic_write_json, cache_dir
from cure_core.model.card import Metrics, ModelCard, read_card, write_card

if TYPE_CHECKING:
    from pydantic import BaseModel

    from cure_core.data.samples import Samples
    from cure_core.model.recommender import Recommender
    from cure_core.model.repository import ModelRepository
    from cure_core.unlearning.runner import UnlearnResult

MODEL, MERGED = "model", "merged"


def run_dir(run: str) -> Path:
    return cache_dir("runs") / run


def save_run(run: str, result: UnlearnResult, report: BaseModel, samples: Samples, save_merged: bool = False) -> Path:
    """Write the model (``merged/`` too with ``save_merged``, LoRA runs only), history and
    report atomically, the report last."""
    folder = run_dir(run)
    card = ModelCard(
        run=run,
        method=result.config.method,
        request=getattr(report, "request", None),
        metrics=Metrics(test_auc=getattr(report, "test_auc", None), forget_auc=getattr(report, "forget_auc", None)),
    )
    if result.config.lora:  # the adapter module comes with LoRA runs (cure_core.unlearning.lora)
        from cure_core.checkpoints.copies import merged_copy
        from cure_core.unlearning.lora import save_adapter

        peft_model = result.model.model
        with atomic_directory(folder / MODEL) as tmp:
            save_adapter(peft_model, tmp)
            write_card(
                tmp, card.model_copy(update={"kind": "lora", **result.model.backend.saved_fields(result.model, tmp)})
            )
        if save_merged:
            merged = dataclasses.replace(result.model, model=merged_copy(peft_model))
            save_model(merged, folder / MERGED, samples, card.model_copy(update={"merged_from": MODEL}))
    else:
        save_model(result.model, folder / MODEL, samples, card)
    atomic_write_json(folder / "history.json", result.history)
    atomic_write_json(folder / "report.json", report.model_dump())
    return folder


def save_model(rec: Recommender, folder: Path, samples: Samples, card: ModelCard) -> None:
    """A run's unlearned model, all its weights, as its backend saves one."""
    rec.backend.save_run_model(rec, folder, samples, card)


def load_run_model(models: ModelRepository, run: str) -> Recommender:
    """The unlearned model of a finished run on ``models``' kind, as :func:`save_run` wrote it:
    as its backend saves one, or a LoRA adapter put on a copy of the Original (its base)."""
    folder = run_dir(run) / MODEL
    try:
        kind = read_card(folder).kind
    except (OSError, ValueError):
        kind = None
    if kind == "lora":
        from cure_core.unlearning.lora import load_saved

        original = models.original(quiet=True)
        rec = original.with_model(load_saved(original.model, folder))
        rec.path = folder
        return rec
    return models.backend.load_run_model(folder, models.data.dataset, models.data.samples)


def load_history(run: str) -> list[dict[str, Any]]:
    """A finished run's per-step curve ([] when missing)."""
    try:
        return json.loads((run_dir(run) / "history.json").read_text())
    except (OSError, json.JSONDecodeError):
        return []


def checkpoint_archive(run: str) -> bytes:
    """Everything in the run's ``model/`` folder (a checkpoint, or a LoRA adapter) as a zip, for downloads."""
    folder = run_dir(run) / MODEL
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            archive.write(path, arcname=f"{run}/{path.relative_to(folder).as_posix()}")
    return buffer.getvalue()
