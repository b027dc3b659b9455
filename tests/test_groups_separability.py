"""Separability, unweighted and importance-weighted (``cure_core.separability``), on hand-made
importance tables: invariants of the definitions, no model run."""

from __future__ import annotations

import numpy as np
import pytest

from cure_core.groups import GroupSettings, ModuleGroups
from cure_core.separability import log_ratio_spread, separability, weighted_log_ratio_spread

FORGET = np.array([0.40, 0.25, 0.15, 0.10, 0.06, 0.04])
RETAIN = np.array([0.30, 0.30, 0.20, 0.05, 0.10, 0.05])
CONTROLS = np.array(
    [
        [0.32, 0.28, 0.21, 0.06, 0.08, 0.05],
        [0.29, 0.31, 0.18, 0.07, 0.09, 0.06],
        [0.35, 0.27, 0.19, 0.04, 0.11, 0.04],
    ]
)


def _reference_weighted_spread(values: np.ndarray, reference: np.ndarray) -> float:
    """np.average-based weighted population std of log(values / reference), weights (values + reference) / 2."""
    x = np.log(values / reference)
    w = (values + reference) / 2
    centre = np.average(x, weights=w)
    return float(np.sqrt(np.average((x - centre) ** 2, weights=w)))


def test_weighted_spread_and_ratio_match_a_reference_computation():
    assert weighted_log_ratio_spread(FORGET, RETAIN) == pytest.approx(
        _reference_weighted_spread(FORGET, RETAIN), rel=1e-12
    )
    controls = [_reference_weighted_spread(c, RETAIN) for c in CONTROLS]
    sep = separability(FORGET, RETAIN, CONTROLS)
    assert sep["spread_control_mean_weighted"] == pytest.approx(np.mean(controls), rel=1e-12)
    assert sep["spread_control_std_weighted"] == pytest.approx(np.std(controls), rel=1e-12)
    assert sep["separability_weighted"] == pytest.approx(
        _reference_weighted_spread(FORGET, RETAIN) / np.mean(controls), rel=1e-12
    )
    assert sep["spread_forget"] == log_ratio_spread(FORGET, RETAIN)  # the unweighted keys are unchanged


def test_equal_weights_give_the_unweighted_population_std():
    forget = np.array([0.10, 0.30, 0.20, 0.40])
    retain = np.array([0.40, 0.20, 0.30, 0.10])  # forget + retain is 0.5 everywhere: equal weights
    expected = np.std(np.log(forget / retain), ddof=0)
    assert weighted_log_ratio_spread(forget, retain) == pytest.approx(expected, rel=1e-12)
    assert log_ratio_spread(forget, retain) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("scale", [0.01, 7.5])
def test_both_separabilities_are_invariant_to_scaling_every_importance(scale):
    plain, scaled = (
        separability(FORGET, RETAIN, CONTROLS),
        separability(scale * FORGET, scale * RETAIN, scale * CONTROLS),
    )
    assert scaled.keys() == plain.keys()
    for key, value in plain.items():
        assert scaled[key] == pytest.approx(value, rel=1e-12), key


def test_a_forget_set_with_a_control_draws_importances_has_ratio_one():
    for controls in ([FORGET], [FORGET, FORGET.copy()]):
        sep = separability(FORGET.copy(), RETAIN, np.array(controls))
        assert sep["separability_weighted"] == sep["separability"] == 1.0
        assert sep["spread_control_std_weighted"] == 0.0


def test_groups_without_the_weighted_keys_still_give_their_verdict():
    """A separability dict stored before the weighted one existed (e.g. in a run report)."""
    old = {"separability": 1.5, "spread_control_mean": 1.0, "spread_control_std": 0.1}
    groups = ModuleGroups(table=None, separability=old, settings=GroupSettings(), warnings=[])  # type: ignore[arg-type]
    assert groups.beyond_noise is True and groups.beyond_noise_weighted is None
    full = {**old, **{f"{k}_weighted": v for k, v in old.items()}}
    groups = ModuleGroups(table=None, separability=full, settings=GroupSettings(), warnings=[])  # type: ignore[arg-type]
    assert groups.beyond_noise_weighted is True
