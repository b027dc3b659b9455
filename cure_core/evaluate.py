"""Evaluating a model on a forget request next to Retrain (method.md §8).

:func:`compare_to_retrain` measures any model; :func:`reference_comparison` is Original against
Retrain, the reference every table, study and page shows methods next to: computed once per
(Original's weights, Retrain's weights, request) and kept in ``cache/references``.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from pydantic import ValidationError

from cure_core.cache import atomic_write_json, cache_dir
from cure_core.cache_keys import cache_key
from cure_core.comparison import Comparison, ModelScores
from cure_core.data.samples import Samples
from cure_core.metrics import Predictions, jsd, l2_distance, mia_auc, mia_scores, utility
from cure_core.model.recommender import Recommender
from cure_core.model_source import MissingRetrainError
from cure_core.requests import ForgetRequest, RequestSets

RETAIN_PROBE = 5000
TEXT_EVAL_PROMPTS = 2000
"""Most prompts a text-mode model is scored on per evaluation set (test, holdout, the retain probe,
and the studies' validation split), as seeded draws. A text prompt costs ~100 tokens, so on two CPU
cores the whole sets (~20,000 prompts) take minutes per run; the forget set, which every distance
to Retrain is about, is always scored whole. Item models are scored on whole sets."""
SetPredictions = dict[str, tuple[np.ndarray, Predictions]]


def evaluation_cap(rec: Recommender) -> int | None:
    """The per-set prompt cap of ``rec`` (:data:`TEXT_EVAL_PROMPTS` where scoring is costly), else ``None``."""
    return TEXT_EVAL_PROMPTS if rec.capabilities.costly_scoring else None


def evaluation_key(rec: Recommender) -> dict[str, int]:
    """What a cache key of ``rec``'s evaluations adds for the cap: ``{"evaluation_cap": N}`` for a
    text model, nothing for an item model (so item keys stay what they were before the cap)."""
    cap = evaluation_cap(rec)
    return {} if cap is None else {"evaluation_cap": cap}


def drawn(idx: np.ndarray, size: int | None, seed: int = 0) -> np.ndarray:
    """A seeded draw of ``size`` rows of ``idx`` (in index order), or ``idx`` when it is no larger."""
    if size is None or len(idx) <= size:
        return idx
    return np.sort(np.random.default_rng(seed).choice(idx, size=size, replace=False))


def evaluation_sets(sets: RequestSets, cap: int | None) -> dict[str, np.ndarray]:
    """The rows scored per set: forget whole; test and holdout whole or drawn to ``cap``; a retain
    probe of :data:`RETAIN_PROBE` rows (read at call time), at most ``cap``."""
    return {
        "test": drawn(sets.test, cap),
        "forget": sets.forget,
        "holdout": drawn(sets.holdout, cap),
        "retain": drawn(sets.retain, RETAIN_PROBE if cap is None else min(RETAIN_PROBE, cap)),
    }


def set_predictions(rec: Recommender, samples: Samples, sets: RequestSets) -> SetPredictions:
    """Predictions on the rows :func:`evaluation_sets` picks for ``rec``."""
    chosen = evaluation_sets(sets, evaluation_cap(rec))
    return {name: (idx, rec.predict(samples, idx)) for name, idx in chosen.items()}


def evaluated_sizes(preds: SetPredictions) -> dict[str, int]:
    return {name: len(idx) for name, (idx, _) in preds.items()}


def model_scores(rec: Recommender, samples: Samples, preds: SetPredictions) -> ModelScores:
    """Utility on each set and membership-inference AUC (forget = members, holdout = non-members)."""
    scores: dict[str, Any] = {
        name: utility(samples.label[idx], p) for name, (idx, p) in preds.items() if name != "holdout" and len(idx)
    }
    (f_idx, f_pred), (h_idx, h_pred) = preds["forget"], preds["holdout"]
    if len(h_idx):
        members = mia_scores(f_pred, samples.label[f_idx], _prompt_bytes(rec, samples, f_idx))
        nonmembers = mia_scores(h_pred, samples.label[h_idx], _prompt_bytes(rec, samples, h_idx))
        scores["mia"] = mia_auc(members, nonmembers)
    return ModelScores.model_validate(scores)


def compare_to_retrain(
    rec: Recommender,
    retrain: Recommender | None,
    request: ForgetRequest,
    samples: Samples,
    sets: RequestSets,
    name: str = "model",
) -> Comparison:
    """Both models' scores, distances to Retrain on forget, PrivLeak (see :class:`Comparison`).

    Without a Retrain (a user's checkpoint given without one) the model's own utility and
    forget-vs-holdout MIA are still measured; everything against Retrain is ``None``."""
    preds = set_predictions(rec, samples, sets)
    common = {
        "name": name,
        "request": request.id,
        "request_description": request.description,
        "sizes": sets.sizes(),
        "evaluated": evaluated_sizes(preds),
        "model": model_scores(rec, samples, preds),
    }
    if retrain is None:
        return Comparison(
            **common,
            retrain=None,
            jsd_to_retrain=None,
            l2_to_retrain=None,
            retrain_unavailable=MissingRetrainError().problem,
        )
    ref_preds, ref = _retrain_scores(retrain, request, samples, sets)
    return Comparison(
        **common,
        retrain=ref,
        retrain_model=reference_identity(retrain),
        jsd_to_retrain=jsd(preds["forget"][1], ref_preds["forget"][1]),
        l2_to_retrain=l2_distance(preds["forget"][1], ref_preds["forget"][1]),
    )


def reference_identity(retrain: Recommender) -> dict[str, str]:
    """Which Retrain a report was measured against: its folder (with a user's adapter) and the
    identity of its card (``fingerprint``)."""
    checkpoint = retrain.card.checkpoint
    adapter = checkpoint.adapter.path if checkpoint is not None and checkpoint.adapter is not None else None
    path = f"{retrain.path}" + (f" + adapter {adapter}" if adapter else "")
    return {"path": path, "fingerprint": retrain.card.fingerprint or ""}


def reference_comparison(
    original: Recommender, retrain: Recommender | None, request: ForgetRequest, samples: Samples, sets: RequestSets
) -> Comparison:
    """Original compared with Retrain (named ``original``), from ``cache/references`` when both
    models are saved ones, else computed (and then saved)."""
    weights = (original.card.fingerprint, retrain.card.fingerprint if retrain else None)
    if not all(weights):
        return compare_to_retrain(original, retrain, request, samples, sets, name="original")
    spec = {
        "original": weights[0],
        "retrain": weights[1],
        "request": request.id,
        "sizes": sets.sizes(),
        **evaluation_key(original),
    }
    path = cache_dir("references") / f"{cache_key('reference', spec)}.json"
    try:
        return Comparison.model_validate_json(path.read_text())
    except (OSError, ValueError, ValidationError):
        pass
    comparison = compare_to_retrain(original, retrain, request, samples, sets, name="original")
    atomic_write_json(path, comparison.model_dump())
    return comparison


_RETRAIN_SCORES: dict[tuple[str, str, str], tuple[SetPredictions, ModelScores]] = {}


def _retrain_scores(
    retrain: Recommender, request: ForgetRequest, samples: Samples, sets: RequestSets
) -> tuple[SetPredictions, ModelScores]:
    """Retrain's predictions and scores, computed once per process for a saved Retrain (runs
    and sweeps compare many models with the same reference)."""
    weights = retrain.card.fingerprint or ""
    key = (weights, request.id, json.dumps([sets.sizes(), evaluation_cap(retrain)], sort_keys=True))
    if not weights or key not in _RETRAIN_SCORES:
        preds = set_predictions(retrain, samples, sets)
        value = (preds, model_scores(retrain, samples, preds))
        if not weights:
            return value
        _RETRAIN_SCORES[key] = value
    return _RETRAIN_SCORES[key]


def _prompt_bytes(rec: Recommender, samples: Samples, idx: np.ndarray) -> list[bytes]:
    """The prompts as bytes (padding left out), for the ZLib attack's compressed length."""
    batch = rec.encode(samples, idx)
    ids = batch.input_ids.numpy().astype(np.int32)
    if batch.attention_mask is None:
        return [row.tobytes() for row in ids]
    real = batch.attention_mask.numpy().astype(bool)
    return [row[keep].tobytes() for row, keep in zip(ids, real, strict=True)]
