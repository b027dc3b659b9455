"""Which rows an evaluation scores: whole sets for item models, seeded draws for text models."""

from __future__ import annotations

import numpy as np

from cure_core.evaluate import RETAIN_PROBE, drawn, evaluation_sets
from cure_core.requests import RequestSets


def _sets() -> RequestSets:
    rng = np.random.default_rng(3)
    rows = rng.permutation(20_000)
    return RequestSets(
        forget=np.sort(rows[:3_000]),
        retain=np.sort(rows[3_000:12_000]),
        valid=np.sort(rows[12_000:14_000]),
        test=np.sort(rows[14_000:17_500]),
        holdout=np.sort(rows[17_500:]),
        forget_users=np.zeros(0, dtype=np.int64),
    )


def test_a_draw_is_a_seeded_sorted_subset_and_small_sets_stay_whole():
    idx = np.arange(100, 1_100)
    draw = drawn(idx, 300)
    assert len(draw) == 300 and len(np.unique(draw)) == 300 and np.isin(draw, idx).all()
    assert np.array_equal(draw, np.sort(draw)) and np.array_equal(draw, drawn(idx, 300))
    assert not np.array_equal(draw, drawn(idx, 300, seed=1))
    assert drawn(idx, 1_000) is idx and drawn(idx, None) is idx


def test_item_models_score_whole_sets_and_the_same_retain_probe_as_before():
    sets = _sets()
    chosen = evaluation_sets(sets, None)
    for name in ("test", "forget", "holdout"):
        assert np.array_equal(chosen[name], getattr(sets, name))
    # the retain probe rule from before text caps existed: seed 0, RETAIN_PROBE rows, sorted
    before = np.sort(np.random.default_rng(0).choice(sets.retain, size=RETAIN_PROBE, replace=False))
    assert np.array_equal(chosen["retain"], before)


def test_a_cap_draws_test_holdout_and_retain_but_keeps_forget_whole():
    sets = _sets()
    chosen = evaluation_sets(sets, 2_000)
    assert np.array_equal(chosen["forget"], sets.forget)
    for name in ("test", "holdout", "retain"):
        assert len(chosen[name]) == 2_000 and np.isin(chosen[name], getattr(sets, name)).all()
    assert np.array_equal(evaluation_sets(sets, 5_000)["holdout"], sets.holdout)  # 2,500 rows: whole
    assert len(evaluation_sets(sets, 8_000)["retain"]) == RETAIN_PROBE  # the probe is never larger
