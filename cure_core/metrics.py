"""Every metric of method.md §8 in one place: utility, distance to Retrain, membership inference.

ROC-AUC and log loss come from scikit-learn. Conventions: labels are 1 = liked; a model's
answer distribution on a sample is (P(Yes), P(No)) with the softmax over the two answers.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score


@dataclass
class Predictions:
    """Per-sample outputs at the answer position (all ``[n]`` float arrays).

    ``margin`` = logit(Yes) − logit(No), the score of method.md §1. ``logp_yes``/``logp_no`` are
    log-probabilities over the *whole* vocabulary (what the LM loss sees); ``logp_mean`` and
    ``logp_std`` are the mean and std of log p over the vocabulary under p, which Min-K%++
    uses to z-normalise a token's log-probability.
    """

    margin: np.ndarray
    logp_yes: np.ndarray
    logp_no: np.ndarray
    logp_mean: np.ndarray
    logp_std: np.ndarray

    @property
    def p_yes(self) -> np.ndarray:
        """P(Yes) with the softmax taken over the two answers."""
        return 1.0 / (1.0 + np.exp(-self.margin))

    def answer_logp(self, labels: np.ndarray) -> np.ndarray:
        """Log-probability (full vocabulary) of the true answer."""
        return np.where(labels == 1, self.logp_yes, self.logp_no)


MIA_ATTACKS = ("loss", "min_k", "min_k_pp", "zlib")


def safe_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC-AUC, or ``None`` where it is undefined (one class only)."""
    return float(roc_auc_score(labels, scores)) if len(np.unique(labels)) == 2 else None


def utility(labels: np.ndarray, preds: Predictions) -> dict[str, float | None]:
    """AUC, accuracy and log loss of the Yes/No answer."""
    p = np.clip(preds.p_yes, 1e-7, 1 - 1e-7)
    return {
        "auc": safe_auc(labels, preds.margin),
        "acc": float(accuracy_score(labels, p > 0.5)),
        "logloss": float(log_loss(labels, p, labels=[0, 1])),
        "n": len(labels),
    }


def answer_distribution(preds: Predictions) -> np.ndarray:
    """``[n, 2]`` (P(Yes), P(No))."""
    p = preds.p_yes
    return np.stack([p, 1 - p], axis=1)


def jsd(a: Predictions, b: Predictions) -> float:
    """Mean Jensen–Shannon divergence (natural log, so in [0, ln 2]) between answer distributions."""
    p, q = np.clip(answer_distribution(a), 1e-12, 1), np.clip(answer_distribution(b), 1e-12, 1)
    m = (p + q) / 2
    kl = lambda x, y: (x * np.log(x / y)).sum(axis=1)  # noqa: E731
    return float(np.mean(0.5 * kl(p, m) + 0.5 * kl(q, m)))


def l2_distance(a: Predictions, b: Predictions) -> float:
    """Mean L2 distance between answer distributions."""
    return float(np.mean(np.linalg.norm(answer_distribution(a) - answer_distribution(b), axis=1)))


def mia_scores(
    preds: Predictions, labels: np.ndarray, prompt_bytes: list[bytes], k: float = 0.2
) -> dict[str, np.ndarray]:
    """Per-sample membership scores, higher = more likely a member.

    The scored tokens are the answer tokens (``[n, T]`` with T = 1 here: the model is trained on
    the answer only). With one token Min-K% (mean of the lowest k% token log-probs) coincides
    with LOSS; Min-K%++ still differs (it z-normalises each log-prob by the mean and std of log p
    over the vocabulary) and ZLib divides the loss by the zlib-compressed prompt length.
    """
    token_logp = preds.answer_logp(labels)[:, None]
    token_z = ((preds.answer_logp(labels) - preds.logp_mean) / preds.logp_std)[:, None]
    n_lowest = max(1, int(np.ceil(k * token_logp.shape[1])))
    min_k = np.sort(token_logp, axis=1)[:, :n_lowest].mean(axis=1)
    min_k_pp = np.sort(token_z, axis=1)[:, :n_lowest].mean(axis=1)
    nll = -token_logp.sum(axis=1)
    zlen = np.array([len(zlib.compress(b)) for b in prompt_bytes], dtype=float)
    return {"loss": -nll, "min_k": min_k, "min_k_pp": min_k_pp, "zlib": -nll / zlen}


def mia_auc(member_scores: dict[str, np.ndarray], nonmember_scores: dict[str, np.ndarray]) -> dict[str, float | None]:
    """ROC-AUC of each attack separating members (1) from non-members (0)."""
    out: dict[str, float | None] = {}
    for attack in MIA_ATTACKS:
        labels = np.r_[np.ones(len(member_scores[attack])), np.zeros(len(nonmember_scores[attack]))]
        out[attack] = safe_auc(labels, np.r_[member_scores[attack], nonmember_scores[attack]])
    return out


def privleak(auc_method: float, auc_retrain: float) -> float:
    """MUSE PrivLeak in percent: near 0 ideal, negative under-unlearned, positive over-unlearned."""
    return float(((1 - auc_method) - (1 - auc_retrain)) / (1 - auc_retrain) * 100)
