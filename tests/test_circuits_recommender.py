"""Circuit discovery on the recommender: corruptions, cached attributions, CLI (tiny model)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from tolerances import assert_close

from analysis.circuit import select
from analysis.export import read_json, to_circuit
from cure_core import cli
from cure_core.circuits import (
    AttributionSettings,
    attribution_path,
    circuit_context,
    find_circuit,
    get_attribution,
    split_prompts,
)
from cure_core.corruptions import corrupt
from cure_core.data import Samples
from cure_core.errors import CureError
from cure_core.requests import item_request
from cure_core.workspace import Workspace
from tests.test_data import write_grouplens
from tests.tiny_recipes import TINY_RECIPE

QUICK = AttributionSettings(n_prompts=48, n_eval=32, batch_size=16)


@pytest.fixture(scope="module")
def ctx(synthetic, tmp_path_factory):
    """The tiny model, trained once for this module in its own cache (tests still write their
    attributions to their own isolated caches)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CURE_CACHE", str(tmp_path_factory.mktemp("circuits-cache")))
        ws = Workspace.open(dataset=synthetic, recipe=TINY_RECIPE)
        return circuit_context(ws, ws.data.default_request(), device="cpu")


def test_history_swap_keeps_user_and_target_and_takes_another_users_history(synthetic_samples, tiny_ws):
    samples = synthetic_samples
    idx = samples.index(Samples.TRAIN)[:200]
    bad = corrupt("history", samples, idx, None, tiny_ws.data.default_request(), np.random.default_rng(0))
    assert np.array_equal(bad.samples.target, samples.target[idx]) and np.array_equal(
        bad.samples.user, samples.user[idx]
    )
    assert (bad.samples.history != samples.history[idx]).any(axis=1).mean() > 0.9
    donors = [np.flatnonzero((samples.history == h).all(axis=1)) for h in bad.samples.history[:20]]
    assert all((samples.user[d] != samples.user[i]).any() for d, i in zip(donors, idx[:20], strict=True))


def test_target_swap_avoids_the_requests_items(synthetic, synthetic_samples):
    samples = synthetic_samples
    request = item_request(synthetic, samples, item_ids=samples.item_ids[:10], scope="target")
    idx = samples.index(Samples.TRAIN)[:300]
    bad = corrupt("target", samples, idx, None, request, np.random.default_rng(0))
    assert not np.isin(bad.samples.target, np.arange(10)).any()
    assert (bad.samples.target != samples.target[idx]).all()
    assert np.array_equal(bad.samples.history, samples.history[idx])


def test_user_corruption_writes_the_unknown_user(ctx):
    idx = ctx.sets.forget[:8]
    bad = corrupt("user", ctx.samples, idx, None, ctx.request, np.random.default_rng(0))
    clean = ctx.rec.encode(ctx.samples, idx).input_ids
    corrupted = ctx.rec.encoder.encode(bad.samples, np.arange(len(idx)), bad.user_known).input_ids
    assert (corrupted[:, 0] == ctx.rec.encoder.unk_user_id).all()
    assert np.array_equal(corrupted[:, 1:], clean[:, 1:])


def test_unknown_corruption_is_a_clear_error(ctx):
    with pytest.raises(CureError, match="history, target, user"):
        corrupt("shuffle", ctx.samples, ctx.sets.forget[:4], None, ctx.request, np.random.default_rng(0))


def test_attribution_and_evaluation_prompts_are_disjoint():
    attribution, evaluation = split_prompts(np.arange(1000), QUICK)
    assert len(attribution) == 48 and len(evaluation) == 32 and not set(attribution) & set(evaluation)
    small_a, small_e = split_prompts(np.arange(30), QUICK)
    assert len(small_a) == 20 and len(small_e) == 10 and not set(small_a) & set(small_e)


def test_attribution_is_cached_and_a_corrupt_entry_is_recomputed(ctx, monkeypatch):
    first = get_attribution(ctx, "retain", QUICK, quiet=True)
    assert first.n_prompts == 48 and first.batch_scores.shape[0] == 3
    path = attribution_path(ctx.rec, ctx.request, "retain", QUICK)

    def fail(*args, **kwargs):
        raise AssertionError("recomputed although cached")

    with monkeypatch.context() as patched:
        patched.setattr("cure_core.circuits.attribute_sharded", fail)
        np.testing.assert_array_equal(get_attribution(ctx, "retain", QUICK, quiet=True).scores, first.scores)
    path.write_bytes(b"not a zip file")
    with pytest.warns(UserWarning, match="recomputing"):
        again = get_attribution(ctx, "retain", QUICK, quiet=True)
    assert_close(again.scores, first.scores)
    other = get_attribution(ctx, "retain", QUICK.model_copy(update={"corruption": "user"}), quiet=True)
    assert not np.allclose(other.scores, first.scores)


def test_find_circuit_gives_a_curve_that_ends_at_one(ctx):
    attribution = get_attribution(ctx, "retain", QUICK, quiet=True)
    result = find_circuit(ctx, attribution, "retain", QUICK, "top-n", 30, curve_points=6, quiet=True)
    assert np.array_equal(result.circuit.edges, select(attribution.shape, attribution.scores, "top-n", 30).edges)
    assert (
        result.circuit.n_edges <= 30
    )  # pruning keeps how many of the 30 lie on input→logits paths: the model's business
    sizes = [n for n, _ in result.curve]
    assert sizes[0] == 0 and sizes[-1] == attribution.shape.n_edges
    assert result.curve[0][1].value == pytest.approx(0.0, abs=1e-5)
    assert result.curve[-1][1].value == pytest.approx(1.0, abs=1e-5)


def test_cli_attribute_and_circuit_export(capsys, tmp_path, synthetic, monkeypatch):
    monkeypatch.setattr("cure_core.model.backends.item.Recipe", lambda: TINY_RECIPE)
    data = str(write_grouplens(tmp_path / "ml", synthetic))
    small = ["--prompts", "40", "--eval-prompts", "24", "--batch-size", "16", "--data", data]
    assert cli.main(["attribute", "--set", "retain", "--method", "eap", *small]) == 0
    out = capsys.readouterr().out
    assert "retain set: 40 prompts, eap" in out and "->" in out
    assert (
        cli.main(
            ["circuit", "--top-n", "20", "--curve-points", "4", "--export", "json", str(tmp_path / "c.json"), *small]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "forget circuit" in out and "retain circuit" in out and "Jaccard" in out
    circuit, scores = to_circuit(read_json(tmp_path / "c-forget.json"))
    assert circuit.n_edges <= 20 and set(scores) == {"forget", "retain", "control-0"}
    assert "noise floor" in out and (tmp_path / "c-control-0.json").exists()
    assert (
        cli.main(
            [
                "circuit",
                "--set",
                "retain",
                "--share",
                "0.5",
                "--curve-points",
                "0",
                "--export",
                "csv",
                str(tmp_path / "r.csv"),
                *small,
            ]
        )
        == 0
    )
    table = pd.read_csv(tmp_path / "r.csv", keep_default_na=False)
    assert {"source", "target", "qkv", "score"} <= set(table.columns)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["circuit", "--export", "png", "x.png"], "unknown export format"),
        (["attribute", "--steps", "0"], "argument --steps"),
        (["attribute", "--request", "user-00000000"], "no forget request"),
    ],
)
def test_cli_bad_input(capsys, argv, message):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "fix:" in err and "Traceback" not in err


def test_control_sets_match_the_request_and_are_disjoint(tiny_ws, synthetic):
    from cure_core.controls import control_set

    samples = tiny_ws.data.samples
    request = tiny_ws.data.default_request()
    sets = tiny_ws.data.sets(request)
    draws = [control_set(request, samples, sets, draw) for draw in range(3)]
    users = [set(np.unique(samples.user[d])) for d in draws]
    assert all(len(u) == len(sets.forget_users) for u in users)
    assert not (users[0] & users[1]) and not (users[1] & users[2])
    assert all(np.isin(d, sets.retain).all() for d in draws)
    genre = item_request(synthetic, samples, item_ids=samples.item_ids[:4], scope="target")
    genre_sets = tiny_ws.data.sets(genre)
    control = control_set(genre, samples, genre_sets, 0)
    assert len(np.unique(samples.target[control])) == 4 and not np.isin(samples.target[control], np.arange(4)).any()
    with pytest.raises(CureError, match="control draw"):
        control_set(request, samples, sets, draw=10_000)
