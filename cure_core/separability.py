"""Separability of a forget/retain split (method.md §6), unweighted and importance-weighted.

Both compare the forget set's importances I_f with the retain set's I_r, per head and MLP, on a
log scale, against the same comparison for each matched control draw c (I_c against I_r):

- **unweighted**: the spread is the population standard deviation (ddof 0) over modules of
  log(I_f / I_r); the ratio is that spread over the mean spread of log(I_c / I_r) over the draws.
  Every module counts the same, so log ratios of modules holding 0.1% of the importance, which
  are mostly noise, weigh as much as the circuit's.
- **importance-weighted**: the same with a weighted standard deviation (about the weighted mean,
  ddof 0) whose weights are w_m = (I_f,m + I_r,m) / 2, normalised to sum 1. Its null uses, for
  each draw c, weights (I_c,m + I_r,m) / 2: a control draw is measured exactly as the forget set
  is, so a forget set that is one more draw gives ratio 1 here too. The mean of the two sides
  (not I_r alone) keeps the weight symmetric: a module that matters on either side counts, and a
  module one side drops entirely keeps half its weight.

Each is reported as the forget spread, the control spreads' mean and standard deviation over the
draws (the null), and the ratio; a ratio is beyond noise when it exceeds 1 by more than two
control standard deviations relative to the control mean (:func:`beyond_noise`).

Importances are floored at 1e-6 inside the logarithm only (a module no set uses has log ratio 0);
the weights use them as they are. Both spreads are unchanged when every importance is scaled by
one constant.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

_FLOOR = 1e-6
WEIGHTED_SUFFIX = "_weighted"  # the weighted keys are the unweighted ones with this suffix


def log_ratio(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """log(values / reference) per module, both floored at 1e-6."""
    return np.log(np.maximum(values, _FLOOR) / np.maximum(reference, _FLOOR))


def log_ratio_spread(values: np.ndarray, reference: np.ndarray) -> float:
    """Population standard deviation over modules of log(values / reference)."""
    return float(np.std(log_ratio(values, reference)))


def importance_weights(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(values + reference) / 2 per module, normalised to sum 1; equal weights when both are 0
    everywhere (every log ratio is then 0, so any weights give spread 0)."""
    weights = (values + reference) / 2
    total = weights.sum()
    return weights / total if total > 0 else np.full(len(weights), 1 / len(weights))


def weighted_log_ratio_spread(values: np.ndarray, reference: np.ndarray) -> float:
    """Weighted population standard deviation of log(values / reference), weights
    :func:`importance_weights` (module docstring)."""
    x = log_ratio(values, reference)
    w = importance_weights(values, reference)
    centre = w @ x
    return float(np.sqrt(w @ (x - centre) ** 2))


def beyond_noise(ratio: float, control_mean: float, control_std: float) -> bool:
    """Whether a separability ratio exceeds 1 by more than two control standard deviations
    relative to the control mean: the one rule for both separabilities."""
    return ratio > 1 + 2 * control_std / max(control_mean, 1e-12)


def _measured(
    spread: Callable[[np.ndarray, np.ndarray], float], i_f: np.ndarray, i_r: np.ndarray, i_c: np.ndarray
) -> dict[str, float]:
    controls = [spread(c, i_r) for c in i_c]
    mean = float(np.mean(controls))
    forget = spread(i_f, i_r)
    return {
        "spread_forget": forget,
        "spread_control_mean": mean,
        "spread_control_std": float(np.std(controls)),
        "separability": forget / max(mean, 1e-12),
    }


def separability(i_f: np.ndarray, i_r: np.ndarray, i_c: np.ndarray) -> dict[str, float]:
    """Both separabilities of heads and MLPs with importances ``i_f``, ``i_r`` (``[modules]``)
    and ``i_c`` (``[draws, modules]``): ``spread_forget``, ``spread_control_mean``,
    ``spread_control_std``, ``separability`` and the same keys with ``_weighted`` appended."""
    weighted = _measured(weighted_log_ratio_spread, i_f, i_r, i_c)
    return {
        **_measured(log_ratio_spread, i_f, i_r, i_c),
        **{key + WEIGHTED_SUFFIX: value for key, value in weighted.items()},
    }


def weighted_beyond_noise(sep: Mapping[str, float]) -> bool | None:
    """:func:`beyond_noise` of the weighted separability in ``sep``, or None when ``sep`` was
    computed before the weighted keys existed (a stored run report)."""
    if "separability_weighted" not in sep:
        return None
    return beyond_noise(
        sep["separability_weighted"], sep["spread_control_mean_weighted"], sep["spread_control_std_weighted"]
    )
