"""Module groups and cached attributions with grouped-query attention (synthetic attributions on a
2-layer graph of 4 query heads sharing 2 key/value heads, no model run): key/value rows sum their
reader heads and follow their groups; the attribution cache keeps ``n_kv_heads``."""

from __future__ import annotations

import io
import json
from functools import partial

import numpy as np
import pytest
from planted import planted_attribution

from analysis.graph import GraphShape
from cure_core.circuits import load_attribution, save_attribution
from cure_core.groups import GroupSettings, group_modules, importance, kv_group
from cure_core.model.example_checkpoint import make_model
from cure_core.modules import parameter_mask
from cure_core.separability import log_ratio_spread, weighted_log_ratio_spread

GQA = GraphShape(2, 4, 2)  # sources: input, a0.h0-3 (1-4), m0 (5), a1.h0-3 (6-9), m1 (10)
SETTINGS = GroupSettings(threshold_rule="absolute", threshold=0.02)


_attribution = partial(planted_attribution, GQA)  # planted node scores, other edges zero


def _planted():
    """a0.h0, a0.h1, a0.h2 forget-specific, a0.h3 retain-specific, a1.h0/a1.h1 outside, the
    rest in both circuits (task-shared)."""
    forget = np.array([0.0, 6, 6, 6, 0.05, 1, 0.001, 0.001, 1, 1, 1])
    retain = np.array([0.0, 0.05, 0.05, 0.05, 6, 1, 0.001, 0.001, 1, 1, 1])
    controls = [_attribution(retain, noise=0.05, seed=s) for s in range(5)]
    return group_modules(GQA, _attribution(forget), _attribution(retain), controls, SETTINGS), controls


def test_kv_group_follows_its_reader_heads_in_a_circuit():
    assert kv_group(["outside", "outside"]) == "outside"
    assert kv_group(["forget-specific", "outside"]) == "forget-specific"
    assert kv_group(["retain-specific", "retain-specific"]) == "retain-specific"
    assert kv_group(["forget-specific", "retain-specific"]) == "task-shared"
    assert kv_group(["forget-specific", "task-shared"]) == "task-shared"
    assert kv_group(["task-shared", "outside"]) == "task-shared"


def test_planted_reader_groups_give_the_kv_groups():
    groups, _ = _planted()
    by_module = dict(zip(groups.table["module"], groups.table["group"], strict=True))
    assert [by_module[f"a0.h{h}"] for h in range(4)] == ["forget-specific"] * 3 + ["retain-specific"]
    assert by_module["a1.h0"] == by_module["a1.h1"] == "outside"
    assert by_module["a0.kv0"] == "forget-specific"  # both readers forget-specific
    assert by_module["a0.kv1"] == "task-shared"  # forget- and retain-specific readers disagree
    assert by_module["a1.kv0"] == "outside"  # no reader in a circuit
    assert by_module["a1.kv1"] == "task-shared"
    assert groups.sizes().loc["forget-specific", "kv head"] == 1
    assert set(groups.without_circuits().table.query("kind == 'kv head'")["group"]) == {"task-shared"}


def test_kv_rows_are_sums_over_reader_heads_and_leave_separability_to_heads_and_mlps():
    groups, controls = _planted()
    table = groups.table
    heads = table[table["kind"].isin(["head", "mlp"])].reset_index(drop=True)
    kv = table[table["kind"] == "kv head"].reset_index(drop=True)
    assert len(heads) == GQA.n_src - 1 and list(kv["module"]) == ["a0.kv0", "a0.kv1", "a1.kv0", "a1.kv1"]
    i_c = np.stack([importance(c) for c in controls])
    for _, row in kv.iterrows():
        readers = [GQA.head_src(row["layer"], h) - 1 for h in range(GQA.n_heads) if GQA.kv_head_of(h) == row["head"]]
        i_f, i_r = heads["importance_forget"][readers].sum(), heads["importance_retain"][readers].sum()
        assert (row["importance_forget"], row["importance_retain"]) == (i_f, i_r)
        assert row["difference"] == i_f - i_r
        assert row["null"] == np.quantile(np.abs(i_c[:, readers].sum(axis=1) - i_r), SETTINGS.null_quantile)
    i_f, i_r = heads["importance_forget"].to_numpy(), heads["importance_retain"].to_numpy()
    assert groups.separability["spread_forget"] == pytest.approx(log_ratio_spread(i_f, i_r), rel=1e-12)
    assert groups.separability["spread_forget_weighted"] == pytest.approx(
        weighted_log_ratio_spread(i_f, i_r), rel=1e-12
    )
    assert groups.separability["significant_modules"] == int(heads["significant"].sum())


def test_group_members_with_kv_heads_are_parameter_masks_of_a_gqa_model():
    groups, _ = _planted()
    model = make_model("qwen2", 24)
    masks = parameter_mask(model, groups.members("forget-specific"))
    prefix = "model.layers.0.self_attn."
    d_head = 16
    assert masks[prefix + "k_proj.weight"][:d_head].all() and not masks[prefix + "k_proj.weight"][d_head:].any()
    assert (
        masks[prefix + "q_proj.weight"][: 3 * d_head].all() and not masks[prefix + "q_proj.weight"][3 * d_head :].any()
    )


def test_the_attribution_cache_keeps_kv_heads_and_reads_old_headers(tmp_path):
    rng = np.random.default_rng(0)
    original = _attribution(rng.normal(size=GQA.n_src))
    save_attribution(original, tmp_path / "gqa.npz")
    loaded = load_attribution(tmp_path / "gqa.npz")
    assert loaded is not None and loaded.shape == GQA and loaded.shape.kv_heads == 2
    np.testing.assert_array_equal(loaded.scores, original.scores)

    def old_file(shape: GraphShape, name: str) -> None:
        """A cache written before n_kv_heads was recorded."""
        header = {"n_layers": shape.n_layers, "n_heads": shape.n_heads, "method": "eap", "steps": 1, "settings": {}}
        buffer = io.BytesIO()
        zeros = np.zeros((shape.n_src, shape.n_dst))
        np.savez_compressed(
            buffer,
            scores=zeros,
            batch_scores=zeros[None],
            metric_clean=np.zeros(2),
            metric_corrupt=np.zeros(2),
            header=np.array(json.dumps(header)),
        )
        (tmp_path / name).write_bytes(buffer.getvalue())

    old_file(GraphShape(2, 4), "mha.npz")
    old = load_attribution(tmp_path / "mha.npz")
    assert old is not None and old.shape == GraphShape(2, 4) and not old.shape.grouped
    old_file(GQA, "gqa-old.npz")  # GQA scores without n_kv_heads do not fit the header's graph
    with pytest.warns(UserWarning, match="unreadable"):
        assert load_attribution(tmp_path / "gqa-old.npz") is None
    assert not (tmp_path / "gqa-old.npz").exists()
