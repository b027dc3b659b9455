"""Behaviour fingerprint: bit-exact weights, histories and metrics of every model kind, every
unlearning configuration and the circuit groups, so that a change of the code's shape can be
shown to leave behaviour exactly as it was.

Run it before and after a change, then compare::

    OMP_NUM_THREADS=1 python tests/behaviour_fingerprint.py > before.json
    OMP_NUM_THREADS=1 python tests/behaviour_fingerprint.py > after.json
    python tests/behaviour_fingerprint.py --compare before.json after.json

``--compare`` prints each configuration that differs (and where) and exits 1 if
any does, 0 if the two files hold the same fingerprints. Two runs of one commit print identical
JSON (``--only PREFIX`` runs the configurations whose names start with PREFIX). The run takes
about five minutes of one core; it writes only into a temporary folder (its own
``CURE_CACHE``, never ``./cache``) that it deletes at the end. The module it imports is named on
stderr (run it with ``PYTHONPATH=<checkout>`` to fingerprint another checkout).

Everything runs on tiny seeded models through the public Python API, in one torch thread with
deterministic kernels, each configuration on a fresh :class:`~cure_core.workspace.Workspace`
(as one ``cure unlearn`` command would), on its kind's default request (5% of users, seed 0):

- ``<kind>/models`` for the three model kinds (set up by :class:`fingerprint_configs.Models`):
  ``item`` (the item-token model trained here, on the tests' synthetic data and tiny recipe of
  ``tests/tiny_recipes.py``), ``text`` (the text model trained here, tiny text recipe) and
  ``user`` (a tiny random Llama checkpoint with a LoRA adapter, written to the temporary
  folder; its Retrain is the base without the adapter). For Original and Retrain: the sha256 of
  the state_dict tensors (name, dtype, shape and bytes in sorted key order), the saved model
  card (training curve and metrics; in its earlier dict form, :func:`card_as_meta`) and the
  cache folder's name; and the Original-vs-Retrain comparison.
- ``<kind>/circuits``: for each attributed set of the default request (forget, retain, the
  matched controls) the sha256 of the score arrays, and the module groups with their scores,
  separability and warnings.
- ``<kind>/<full|lora>/<method>[/<setting>=<value>,...]``: one unlearning run (a few steps) of
  a registered method at its default strength, with the settings named changed from their
  defaults (which ones: :func:`fingerprint_configs.changes`): the sha256 of the unlearned
  weights as saved and read back, the run's id, its per-step history and its report (every
  metric). A run that refuses its settings is fingerprinted by the problem it names, one that
  crashes by the type of its error.

Wall times and peak memory are left out everywhere; so are the keys that change with every
training of a text model (:data:`VARIES`).

Text prompts cost a forward pass of ~100 tokens each, so the text model and the checkpoint work
on a smaller synthetic dataset with shorter histories than the item model.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch
from fingerprint_configs import KINDS, QUICK, Models, check_settings_covered, configurations

MEASURED = frozenset({"seconds", "train_seconds", "peak_memory_mib"})
"""Fields of metas, curves and reports that measure the machine, not the run: left out."""

VARIES = {"text": frozenset({"weights_sha256", "fingerprint", "run"})}
"""Fields whose values change from one training to the next although the weights do not: a text
model's ``weights_sha256`` fingerprints its folder, ``meta.json`` and its wall times included, so
the Retrain fingerprint in reports and the ids of runs on it change with every training. Their
values are written as ``$VARIES``."""


# --- exact digests ------------------------------------------------------------------------------


def tensors_sha256(model: torch.nn.Module) -> str:
    """sha256 over the state_dict: each tensor's name, dtype, shape and bytes, in sorted key order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{flat.dtype}:{tuple(tensor.shape)}\n".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def array_sha256(array: np.ndarray) -> str:
    array = np.ascontiguousarray(array)
    return hashlib.sha256(f"{array.dtype}:{array.shape}\n".encode() + array.tobytes()).hexdigest()


def scrubbed(value: Any, leave_out: frozenset[str], varies: frozenset[str]) -> Any:
    """``value`` without the fields ``leave_out`` and with those of ``varies`` as ``$VARIES``, at any depth."""
    if isinstance(value, dict):
        return {
            k: "$VARIES" if k in varies else scrubbed(v, leave_out, varies)
            for k, v in value.items()
            if k not in leave_out
        }
    if isinstance(value, list):
        return [scrubbed(v, leave_out, varies) for v in value]
    return value


def plain(value: Any) -> Any:
    """JSON for what ``json`` does not know (floats keep every bit: ``json`` writes their repr)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot fingerprint {type(value).__name__}")


def card_as_meta(card: Any) -> dict[str, Any]:
    """A :class:`~cure_core.model.card.ModelCard` in the dict form models carried in memory before
    the card (``mode``, one ``weights_sha256``: :func:`cure_core.legacy.card_fields` read
    backwards), so that fingerprints stay comparable with files written before it."""
    meta = {k: v for k, v in card.model_dump(mode="json").items() if v is not None or k == "request"}
    meta.pop("card_version")
    kind = meta.pop("kind")
    meta["mode"] = "item" if kind == "item" else "text"
    if kind == "item":
        meta.pop("file_sha256")
    if kind == "checkpoint":
        meta.pop("request")
    meta["weights_sha256"] = meta.pop("fingerprint")
    if "metrics" in meta:
        meta["metrics"] = {k: v for k, v in meta["metrics"].items() if v is not None}
    return meta


def model_print(rec: Any) -> dict[str, Any]:
    return {"weights": tensors_sha256(rec.model), "meta": card_as_meta(rec.card), "folder": rec.path.name}


def reference_print(models: Models, kind: str) -> dict[str, Any]:
    from cure_core.evaluate import reference_comparison

    ws = models.workspace(kind)
    request = ws.data.default_request()
    original, retrain = ws.models.reference_models(request, quiet=True)
    comparison = reference_comparison(original, retrain, request, ws.data.samples, ws.data.sets(request))
    return {
        "request": request.id,
        "original": model_print(original),
        "retrain": model_print(retrain),
        "comparison": comparison.model_dump(),
    }


def circuits_print(models: Models, kind: str) -> dict[str, Any]:
    """The default groups of ``kind``'s default request, as a CURE-style run computes them."""
    from cure_core.circuits import AttributionSettings, circuit_context, get_attribution
    from cure_core.groups import default_corruption, fitting_group_settings, groups_for_request

    ws = models.workspace(kind)
    request = ws.data.default_request()
    attribution = AttributionSettings(corruption=default_corruption(request))
    settings = fitting_group_settings(request, ws.data.samples, ws.data.sets(request))
    ctx = circuit_context(ws, request)
    groups = groups_for_request(ctx, attribution, settings, quiet=True)
    sets = ["forget", "retain"] + [f"control-{k}" for k in range(settings.null_draws)]
    scores = {}
    for name in sets:
        result = get_attribution(ctx, name, attribution, quiet=True)  # read back from the cache
        scores[name] = {
            field: array_sha256(getattr(result, field))
            for field in ("scores", "batch_scores", "metric_clean", "metric_corrupt")
        }
    return {
        "attribution": attribution.model_dump(),
        "groups_settings": settings.model_dump(),
        "scores": scores,
        "groups": groups.table.to_dict("records"),
        "separability": groups.separability,
        "warnings": groups.warnings,
    }


# --- the unlearning configurations --------------------------------------------------------------


def run_print(models: Models, kind: str, lora: bool, settings: dict[str, Any]) -> dict[str, Any]:
    from cure_core.errors import CureError
    from cure_core.unlearning.methods import METHODS, UnlearnConfig
    from cure_core.unlearning.run_store import load_run_model
    from cure_core.unlearning.runs import get_run, load_history

    method = settings["method"]
    config = UnlearnConfig(strength=METHODS[method].default_strength(lora), lora=lora, **{**QUICK, **settings})
    ws = models.workspace(kind)
    try:
        report = get_run(ws, ws.data.default_request(), config, quiet=True)
    except CureError as err:
        return {"refused": err.problem}
    unlearned = load_run_model(ws.models, str(report.run))
    return {
        "run": report.run,
        "weights": tensors_sha256(unlearned.model),
        "history": load_history(str(report.run)),
        "report": report.model_dump(),
    }


def guarded(name: str, make: Any, *args: Any) -> dict[str, Any]:
    """``make(*args)``, or the kind of error it raised (where and what go to stderr: the message
    may name things in an order that changes from run to run)."""
    try:
        return make(*args)
    except Exception as err:  # a crash is behaviour too: fingerprinted by its type
        where = traceback.extract_tb(err.__traceback__)[-1]
        print(f"{name}: {type(err).__name__} at {where.filename}:{where.lineno}: {str(err)[:160]}", file=sys.stderr)
        return {"error": type(err).__name__}


def fingerprint(root: Path, only: str = "") -> dict[str, Any]:
    """Every configuration's fingerprint by name (see the module docstring), or those whose
    names start with ``only``."""
    models = Models(root)
    out: dict[str, Any] = {}
    for kind in KINDS:
        jobs: list[tuple[str, Any, tuple[Any, ...]]] = [
            (f"{kind}/models", reference_print, (models, kind)),
            (f"{kind}/circuits", circuits_print, (models, kind)),
        ]
        for lora in (False, True):
            jobs += [(name, run_print, (models, kind, lora, s)) for name, s in configurations(kind, lora)]
        for name, make, args in jobs:
            if name.startswith(only):
                started = time.perf_counter()
                out[name] = scrubbed(guarded(name, make, *args), MEASURED, VARIES.get(kind, frozenset()))
                print(f"{name}: {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return out


# --- entry points -------------------------------------------------------------------------------


def differing(a: Any, b: Any, path: str = "") -> Iterator[str]:
    """The paths (``report.separability.spread_forget``, ``history[2]``) where ``a`` and ``b`` differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            yield from differing(a.get(key), b.get(key), f"{path}.{key}" if path else key)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            yield from differing(x, y, f"{path}[{i}]")
    elif a != b:
        yield path


def compare(first: Path, second: Path, shown: int = 4) -> int:
    """Print each configuration that differs between two fingerprint files, with the first
    ``shown`` paths where it does; 1 if any does."""
    a, b = (json.loads(Path(p).read_text(), parse_constant=str) for p in (first, second))  # NaN == NaN
    differ = 0
    for name in sorted(set(a) | set(b)):
        if name not in a or name not in b:
            print(f"{name}: only in {first if name in a else second}")
        elif a[name] != b[name]:
            paths = list(differing(a[name], b[name]))
            more = f" (+{len(paths) - shown} more)" if len(paths) > shown else ""
            print(f"{name}: {', '.join(paths[:shown])}{more}")
        else:
            continue
        differ += 1
    print(f"{differ} of {len(set(a) | set(b))} configurations differ", file=sys.stderr)
    return 1 if differ else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"), type=Path, help="compare two fingerprint files")
    parser.add_argument("--only", default="", metavar="PREFIX", help="only the configurations named PREFIX...")
    args = parser.parse_args(argv)
    if args.compare:
        return compare(*args.compare)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    with tempfile.TemporaryDirectory(prefix="cure-fingerprint-") as tmp:
        root = Path(tmp)
        os.environ["CURE_CACHE"] = str(root / "cache")
        import cure_core

        print(f"cure_core: {cure_core.__file__}", file=sys.stderr)
        check_settings_covered()
        started = time.perf_counter()
        prints = fingerprint(root, args.only)
        # one configuration a line, so that two files diff configuration by configuration
        text = (
            "{\n"
            + ",\n".join(
                f"{json.dumps(name)}: {json.dumps(prints[name], sort_keys=True, default=plain)}"
                for name in sorted(prints)
            )
            + "\n}"
        )
        for path in {str(root.resolve()), str(root)}:
            text = text.replace(path, "$TMP")
        print(f"total: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
