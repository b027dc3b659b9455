"""Where a study keeps its work: one folder per (study, dataset, model, settings), one JSON file
per finished cell, and the final result. A study that is interrupted resumes from its cells.

Whatever a study compares with a reference is keyed by that reference's weights too (the Retrain
in the context, or :func:`weights_key` in the cell name), so a retrained reference never serves
cells computed against the old one.

``cache/studies/<study>-<key>/cells/<cell>.json`` and ``.../result.json`` (written last, atomically).
"""

from __future__ import annotations

import json
import platform
import re
import subprocess
import time
import warnings
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
from pydantic import BaseModel

from cure_core.cache import atomic_write_json, cache_dir
from cure_core.cache_keys import cache_key
from cure_core.model.card import ModelCard, read_card

RESULT_FILE = "result.json"


def versions() -> dict[str, str]:
    """Python, the key packages, the machine and the source commit, for the record of a study."""
    import torch

    packages = {
        name: metadata.version(name)
        for name in ("torch", "transformer-lens", "transformers", "scikit-learn", "pandas", "networkx", "plotly")
    }
    commit = source_commit()
    return {
        "python": platform.python_version(),
        **packages,
        "machine": platform.machine(),
        "torch threads": str(torch.get_num_threads()),
        **({"commit": commit} if commit else {}),
    }


def source_commit() -> str | None:
    """The git commit of this source tree, with ``+changes`` when tracked files differ from it;
    ``None`` outside a git checkout (an installed package)."""
    root = Path(__file__).resolve().parent.parent.parent
    if not (root / ".git").exists():
        return None

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()

    try:
        head = git("rev-parse", "--short=12", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+changes" if changed else "")


def weights_key(card: ModelCard) -> str:
    """A short tag of a model's identity (its card's ``fingerprint``), for cell names."""
    return str(card.fingerprint or "unknown")[:10]


def study_folder(study: str, key: str) -> Path:
    return cache_dir("studies", f"{study}-{key}")


class StudyStore:
    """The cells and result of one study run (same study + data + model + settings = same folder)."""

    def __init__(self, study: str, settings: BaseModel, context: dict[str, Any]) -> None:
        self.key = cache_key("study", {"settings": settings.model_dump(), "context": context})
        self.folder = study_folder(study, self.key)
        self.study, self.settings, self.context = study, settings, context

    def _cell_path(self, cell: str) -> Path:
        return self.folder / "cells" / f"{re.sub(r'[^A-Za-z0-9_.=-]+', '_', cell)}.json"

    def cell(self, cell: str, compute: Callable[[], Any]) -> Any:
        """The cached value of ``cell``, or ``compute()`` saved atomically (JSON-able values)."""
        path = self._cell_path(cell)
        try:
            return json.loads(path.read_text())["value"]
        except (OSError, json.JSONDecodeError, KeyError):
            pass
        began = time.perf_counter()
        value = compute()
        atomic_write_json(path, {"cell": cell, "value": value, "seconds": time.perf_counter() - began})
        return value

    def cell_seconds(self) -> float:
        """Summed compute time of every cell, over all invocations (a resumed study included)."""
        total = 0.0
        for path in (self.folder / "cells").glob("*.json"):
            try:
                total += float(json.loads(path.read_text()).get("seconds", 0.0))
            except (OSError, json.JSONDecodeError, ValueError):
                continue
        return total

    def previous_invocations(self) -> list[dict[str, Any]]:
        try:
            previous = json.loads((self.folder / RESULT_FILE).read_text())
        except (OSError, json.JSONDecodeError):
            return []
        return list(
            previous.get("invocations", [{"seconds": previous.get("seconds", 0.0), "finished": "", "threads": ""}])
        )

    def save(
        self,
        tables: dict[str, list[dict[str, Any]]],
        figures: dict[str, go.Figure],
        summary: list[str],
        seconds: float,
        commands: str,
    ) -> dict[str, Any]:
        """Write the result; ``seconds`` is this invocation's wall time, ``invocations`` every one
        so far (a resumed study's total time is their sum)."""
        invocations = [
            *self.previous_invocations(),
            {
                "seconds": seconds,
                "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                "threads": versions()["torch threads"],
            },
        ]
        result = {
            "study": self.study,
            "key": self.key,
            "settings": self.settings.model_dump(),
            "context": self.context,
            "tables": tables,
            "figures": {name: json.loads(pio.to_json(fig)) for name, fig in figures.items()},
            "summary": summary,
            "seconds": seconds,
            "invocations": invocations,
            "total_seconds": sum(i["seconds"] for i in invocations),
            "cell_seconds": self.cell_seconds(),
            "command": commands,
            "versions": versions(),
        }
        atomic_write_json(self.folder / RESULT_FILE, result)
        return result


def load_results() -> list[dict[str, Any]]:
    """Every finished study result in the cache, newest first; an unreadable one is skipped
    with a warning naming it."""
    root = cache_dir("studies")
    results = []
    for path in sorted(root.glob(f"*/{RESULT_FILE}"), key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            results.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as err:
            warnings.warn(
                f"skipped the unreadable study result {path} ({err}); rerun that study to rebuild it", stacklevel=2
            )
    return results


def cached_models() -> dict[str, str]:
    """Fingerprint → "<model folder> (d_model N)" of every item model in the cache (the text
    model's identity is computed when it is loaded, not recorded), read once so that labelling
    many results does not re-read every ``meta.json`` per result."""
    models = {}
    for meta_file in cache_dir("models").glob("*/meta.json"):
        try:
            card = read_card(meta_file.parent)
        except (OSError, ValueError):
            continue
        if card.fingerprint is not None and card.recipe is not None:
            models[card.fingerprint] = f"{meta_file.parent.name} (d_model {card.recipe.d_model})"
    return models


def model_label(result: dict[str, Any], models: dict[str, str]) -> str:
    """Which model a result was computed on, in words (``models`` from :func:`cached_models`):
    results name their model by weights hash or, for stability, by recipe."""
    context = result.get("context", {})
    recipe = context.get("recipe")
    if recipe is None and "weights" in context:
        return models.get(context["weights"], f"model with weights {context['weights'][:10]} (no longer cached)")
    return f"recipe with d_model {recipe['d_model']}" if recipe else "model not recorded"


def figure(result: dict[str, Any], name: str) -> go.Figure:
    return pio.from_json(json.dumps(result["figures"][name]))
