import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from cure_core.metrics import Predictions, jsd, l2_distance, mia_auc, mia_scores, privleak, utility


def preds(margin, logp_yes=None, logp_no=None):
    margin = np.asarray(margin, float)
    n = len(margin)
    logp_yes = np.full(n, -1.0) if logp_yes is None else np.asarray(logp_yes, float)
    logp_no = np.full(n, -2.0) if logp_no is None else np.asarray(logp_no, float)
    return Predictions(margin, logp_yes, logp_no, np.full(n, -3.0), np.full(n, 1.0))


def test_utility_matches_definitions():
    labels = np.array([1, 0, 1, 0, 1])
    p = preds([2.0, -1.0, 0.5, 0.2, -0.3])
    u = utility(labels, p)
    assert u["auc"] == pytest.approx(roc_auc_score(labels, p.margin))
    assert u["acc"] == pytest.approx(np.mean((p.p_yes > 0.5) == labels))
    assert u["n"] == 5


def test_jsd_and_l2():
    a, b = preds([0.0, 3.0]), preds([0.0, -3.0])
    assert jsd(a, a) == pytest.approx(0.0, abs=1e-9)
    assert jsd(a, b) == pytest.approx(jsd(b, a))
    assert 0 < jsd(a, b) <= np.log(2)
    assert l2_distance(a, a) == 0.0 and l2_distance(a, b) > 0


def test_mia_separates_members_with_higher_answer_likelihood():
    labels = np.ones(4, dtype=int)
    members = mia_scores(preds([1] * 4, logp_yes=[-0.1, -0.2, -0.1, -0.3]), labels, [b"abc"] * 4)
    nonmembers = mia_scores(preds([1] * 4, logp_yes=[-2.0, -1.5, -3.0, -1.2]), labels, [b"abc"] * 4)
    aucs = mia_auc(members, nonmembers)
    assert aucs["loss"] == 1.0 and aucs["min_k"] == 1.0 and aucs["zlib"] == 1.0 and aucs["min_k_pp"] == 1.0
    assert mia_auc(members, members)["loss"] == 0.5


def test_privleak_sign_convention():
    assert privleak(0.5, 0.5) == 0.0
    assert privleak(0.7, 0.5) < 0  # more member signal than Retrain: under-unlearned
    assert privleak(0.3, 0.5) > 0
    assert privleak(0.6, 0.5) == pytest.approx(-20.0)
