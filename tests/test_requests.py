import json

import numpy as np
import pytest

from cure_core.data import Samples
from cure_core.errors import CureError
from cure_core.requests import (
    interaction_request,
    item_request,
    load_request,
    request_sets,
    save_request,
    trainable_users,
    user_request,
)


def assert_partition(samples, sets):
    train = samples.index(Samples.TRAIN)
    assert len(np.intersect1d(sets.forget, sets.retain)) == 0
    np.testing.assert_array_equal(np.union1d(sets.forget, sets.retain), train)
    assert not np.isin(sets.holdout, train).any()


def test_user_request_is_seeded_disjoint_and_complete(synthetic, synthetic_samples):
    s = synthetic_samples
    a = user_request(synthetic, s, fraction=0.1, seed=3)
    assert a.id == user_request(synthetic, s, fraction=0.1, seed=3).id
    assert a.id != user_request(synthetic, s, fraction=0.1, seed=4).id
    sets = request_sets(a, s)
    assert_partition(s, sets)
    forget_users = s.user_codes(a.users)
    assert set(np.unique(s.user[sets.forget])) == set(forget_users)
    assert not np.isin(s.user[sets.test], forget_users).any()
    assert not np.isin(s.user[sets.retain], forget_users).any()
    assert set(np.unique(s.user[sets.holdout])) <= set(s.holdout_users)
    assert len(a.users) == round(0.1 * len(trainable_users(s)))


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_fraction_outside_unit_interval(synthetic, synthetic_samples, fraction):
    with pytest.raises(CureError, match=r"outside \(0, 1\)"):
        user_request(synthetic, synthetic_samples, fraction=fraction)


def test_bad_user_ids(synthetic, synthetic_samples):
    s = synthetic_samples
    with pytest.raises(CureError, match="unknown user id"):
        user_request(synthetic, s, user_ids=["99999"])
    with pytest.raises(CureError, match="holdout users"):
        user_request(synthetic, s, user_ids=[s.user_ids[s.holdout_users[0]]])
    everyone = [s.user_ids[u] for u in trainable_users(s)]
    with pytest.raises(CureError, match="every trainable user"):
        user_request(synthetic, s, user_ids=everyone)


def test_item_request_scopes(synthetic, synthetic_samples):
    s = synthetic_samples
    target_only = request_sets(item_request(synthetic, s, genre="Genre0", scope="target"), s)
    with_history = request_sets(item_request(synthetic, s, genre="Genre0"), s)
    genre_items = s.item_codes(synthetic.genre_items("Genre0"))
    assert np.isin(s.target[target_only.forget], genre_items).all()
    assert len(with_history.forget) > len(target_only.forget)
    assert not np.isin(s.target[with_history.test], genre_items).any()
    assert np.isin(s.target[target_only.holdout], genre_items).all()
    assert_partition(s, target_only)
    with pytest.raises(CureError, match="no item has the genre"):
        item_request(synthetic, s, genre="Polka")


def test_interaction_covers_every_sample_that_carries_it(synthetic, synthetic_samples):
    """A rating is forgotten as a target and inside later histories: a user's first rating is in
    no target at all, only in the first sample's history (the 196:242 case of `cure forget --interactions 196:242,186:302`)."""
    s = synthetic_samples
    k = s.config.history_len
    code = next(u for u in np.unique(s.user) if u not in s.holdout_users)
    user = s.user_ids[code]
    mine = synthetic.ratings[synthetic.ratings.user == user].sort_values("timestamp", kind="stable")
    first, kth = mine["item"].iloc[0], mine["item"].iloc[k]
    idx = np.flatnonzero(s.user == code)  # in time order: sample j has target rating j + k
    train = idx[s.split[idx] == Samples.TRAIN]
    # first rating: history of sample 0 only; rating k: target of sample 0, history of samples 1..k
    expected = np.intersect1d(idx[: k + 1], train)
    request = interaction_request(synthetic, s, [(user, first), (user, kth)])
    sets = request_sets(request, s)
    np.testing.assert_array_equal(np.sort(sets.forget), expected)
    assert (
        request.description
        == f"2 rating(s), carried by {len(expected)} training sample(s) (1 as target, {len(expected) - 1} only "
        "in histories)"
    )
    only_first = request_sets(interaction_request(synthetic, s, [(user, first)]), s)
    np.testing.assert_array_equal(only_first.forget, idx[:1])
    assert_partition(s, sets)
    with pytest.raises(CureError, match="at least one"):
        interaction_request(synthetic, s, [])
    with pytest.raises(CureError, match="blank"):
        interaction_request(synthetic, s, [(user, " ")])


def test_item_request_with_target_scope_counts_what_histories_keep(synthetic, synthetic_samples):
    s = synthetic_samples
    request = item_request(synthetic, s, genre="Genre0", scope="target")
    codes = s.item_codes(request.items)
    trained = (s.split == Samples.TRAIN) & ~s.is_holdout_user
    kept = trained & ~np.isin(s.target, codes) & np.isin(s.history, codes).any(axis=1)
    assert kept.sum() > 0
    assert request.description.endswith(
        f"; {int(kept.sum())} retained training sample(s) still hold these items in their history"
    )
    sets = request_sets(request, s)
    assert set(np.flatnonzero(kept)) <= set(sets.retain)


def test_share_is_described_with_enough_precision(synthetic, synthetic_samples):
    assert user_request(synthetic, synthetic_samples, fraction=0.05).description.startswith("5% of users")
    assert user_request(synthetic, synthetic_samples, fraction=0.123).description.startswith("12.3% of users")


def test_empty_forget_set(synthetic, synthetic_samples):
    s = synthetic_samples
    test_only = s.index(Samples.TEST)[0]
    pair = [(s.user_ids[s.user[test_only]], s.item_ids[s.target[test_only]])]
    # synthetic users rate each item once, so this rating is a test target only
    with pytest.raises(CureError, match="covers no training sample"):
        request_sets(interaction_request(synthetic, s, pair), s)


def test_save_load_and_bad_ids(synthetic, synthetic_samples, isolated_cache):
    request = user_request(synthetic, synthetic_samples, fraction=0.1)
    save_request(request)
    assert load_request(request.id) == request
    with pytest.raises(CureError, match="no forget request"):
        load_request("user-00000000")
    path = isolated_cache / "requests" / f"{request.id}.json"
    path.write_text(json.dumps({"kind": "bogus"}))
    with pytest.raises(CureError, match="corrupt"):
        load_request(request.id)
