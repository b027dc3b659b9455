"""Simple non-neural baselines the recommender must beat (like-rates from the training split)."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression

from cure_core.data.samples import Samples
from cure_core.metrics import safe_auc


def _smoothed_rate(
    keys: np.ndarray, labels: np.ndarray, n_keys: int, prior: float, strength: float = 5.0
) -> np.ndarray:
    """Like-rate per key with ``strength`` pseudo-counts at the global rate (rare keys shrink)."""
    likes = np.bincount(keys, weights=labels, minlength=n_keys)
    counts = np.bincount(keys, minlength=n_keys)
    return (likes + strength * prior) / (counts + strength)


def baseline_aucs(samples: Samples, train: np.ndarray, test: np.ndarray) -> dict[str, float | None]:
    """Test AUC of item like-rate, user like-rate, and a logistic regression on both.

    Rates come from the training samples' targets only; the regression is fit on training
    samples (with in-sample rates — slightly optimistic for the baseline, never for us).
    """
    labels = samples.label.astype(float)
    prior = float(labels[train].mean())
    item_rate = _smoothed_rate(samples.target[train], labels[train], len(samples.item_ids), prior)
    user_rate = _smoothed_rate(samples.user[train], labels[train], len(samples.user_ids), prior)

    def features(idx: np.ndarray) -> np.ndarray:
        return np.stack([_logit(item_rate[samples.target[idx]]), _logit(user_rate[samples.user[idx]])], axis=1)

    combined = LogisticRegression().fit(features(train), samples.label[train])
    y = samples.label[test]
    return {
        "item_like_rate": safe_auc(y, item_rate[samples.target[test]]),
        "user_like_rate": safe_auc(y, user_rate[samples.user[test]]),
        "item_plus_user_like_rate": safe_auc(y, combined.decision_function(features(test))),
    }


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))
