"""Evaluating a model on a forget request next to Retrain (method.md §8)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from cure_core.data.samples import Samples
from cure_core.metrics import jsd, l2_distance, mia_auc, mia_scores, privleak, utility
from cure_core.model.recommender import Predictions, Recommender
from cure_core.requests import ForgetRequest, RequestSets

PRIMARY_MIA = "loss"
RETAIN_PROBE = 5000


def set_predictions(rec: Recommender, samples: Samples, sets: RequestSets, retain_probe: int = RETAIN_PROBE, seed: int = 0) -> dict[str, tuple[np.ndarray, Predictions]]:
    """Predictions on test, forget, holdout and a seeded probe of the retain set."""
    retain = sets.retain
    if len(retain) > retain_probe:
        retain = np.sort(np.random.default_rng(seed).choice(retain, size=retain_probe, replace=False))
    chosen = {"test": sets.test, "forget": sets.forget, "holdout": sets.holdout, "retain": retain}
    return {name: (idx, rec.predict(samples, idx)) for name, idx in chosen.items()}


def model_report(rec: Recommender, samples: Samples, preds: dict[str, tuple[np.ndarray, Predictions]]) -> dict[str, Any]:
    """Utility on each set and membership-inference AUC (forget = members, holdout = non-members)."""
    report: dict[str, Any] = {name: utility(samples.label[idx], p) for name, (idx, p) in preds.items() if name != "holdout" and len(idx)}
    (f_idx, f_pred), (h_idx, h_pred) = preds["forget"], preds["holdout"]
    if len(h_idx):
        members = mia_scores(f_pred, samples.label[f_idx], _prompt_bytes(rec, samples, f_idx))
        nonmembers = mia_scores(h_pred, samples.label[h_idx], _prompt_bytes(rec, samples, h_idx))
        report["mia"] = mia_auc(members, nonmembers)
    return report


def compare_to_retrain(rec: Recommender, retrain: Recommender, request: ForgetRequest, samples: Samples, sets: RequestSets, name: str = "model") -> dict[str, Any]:
    """The full comparison: both models' reports, distances to Retrain on forget, PrivLeak.

    The flat keys at the top (``test_auc``, ``forget_auc``, ``retrain_forget_auc``, ``mia_auc``,
    ``retrain_mia_auc`` ...) are the headline numbers; ``model``/``retrain`` hold everything.
    """
    preds = set_predictions(rec, samples, sets)
    ref_preds, ref = _reference(retrain, request, samples, sets)
    ours = model_report(rec, samples, preds)
    out: dict[str, Any] = {
        "name": name,
        "request": request.id,
        "request_description": request.description,
        "sizes": sets.sizes(),
        "test_auc": ours["test"]["auc"],
        "test_acc": ours["test"]["acc"],
        "test_logloss": ours["test"]["logloss"],
        "forget_auc": ours["forget"]["auc"],
        "forget_acc": ours["forget"]["acc"],
        "forget_logloss": ours["forget"]["logloss"],
        "retrain_test_auc": ref["test"]["auc"],
        "retrain_forget_auc": ref["forget"]["auc"],
        "retrain_forget_logloss": ref["forget"]["logloss"],
        "jsd_to_retrain": jsd(preds["forget"][1], ref_preds["forget"][1]),
        "l2_to_retrain": l2_distance(preds["forget"][1], ref_preds["forget"][1]),
        "model": ours,
        "retrain": ref,
    }
    if ours["forget"]["auc"] is not None and ref["forget"]["auc"] is not None:
        out["forget_auc_gap"] = ours["forget"]["auc"] - ref["forget"]["auc"]
    if "mia" in ours:
        out["mia_auc"] = ours["mia"][PRIMARY_MIA]
        out["retrain_mia_auc"] = ref["mia"][PRIMARY_MIA]
        out["privleak"] = {a: privleak(ours["mia"][a], ref["mia"][a]) for a in ours["mia"] if ours["mia"][a] is not None and ref["mia"][a] is not None}
    return out


_REFERENCES: dict[tuple[str, str, str], tuple[dict[str, tuple[np.ndarray, Predictions]], dict[str, Any]]] = {}


def _reference(retrain: Recommender, request: ForgetRequest, samples: Samples, sets: RequestSets) -> tuple[dict[str, tuple[np.ndarray, Predictions]], dict[str, Any]]:
    """Retrain's predictions and report, computed once per process for a saved Retrain (runs
    and sweeps compare many models with the same reference)."""
    weights = str(retrain.meta.get("weights_sha256", ""))
    key = (weights, request.id, json.dumps(sets.sizes(), sort_keys=True))
    if not weights or key not in _REFERENCES:
        preds = set_predictions(retrain, samples, sets)
        value = (preds, model_report(retrain, samples, preds))
        if not weights:
            return value
        _REFERENCES[key] = value
    return _REFERENCES[key]


def _prompt_bytes(rec: Recommender, samples: Samples, idx: np.ndarray) -> list[bytes]:
    """The prompts as bytes, for the ZLib attack's compressed length."""
    ids = rec.encode(samples, idx).input_ids.numpy().astype(np.int32)
    return [row.tobytes() for row in ids]
