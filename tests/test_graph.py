import itertools

import numpy as np
import pytest

from analysis.graph import GraphShape


@pytest.mark.parametrize(("layers", "heads"), [(1, 1), (2, 3), (4, 4), (6, 8), (12, 12)])
def test_mask_matches_closed_formula(layers, heads):
    g = GraphShape(layers, heads)
    mask = g.real_edge_mask()
    assert mask.shape == (g.n_src, g.n_dst) == (1 + layers * (heads + 1), layers * (3 * heads + 1) + 1)
    assert int(mask.sum()) == g.n_edges


def test_gpt2_small_has_32491_edges():
    assert GraphShape(12, 12).n_edges == 32_491


def test_names_and_indices_agree():
    g = GraphShape(3, 2)
    assert len(set(g.src_names)) == g.n_src and len(set(g.dst_names)) == g.n_dst
    for layer, head in itertools.product(range(3), range(2)):
        assert g.src_names[g.head_src(layer, head)] == f"a{layer}.h{head}"
        for x in "qkv":
            assert g.dst_names[g.head_dst(layer, head, x)] == f"a{layer}.h{head}<{x}>"
    assert g.src_names[g.mlp_src(1)] == "m1" and g.dst_names[g.mlp_dst(1)] == "m1"
    assert g.dst_names[g.logits_dst] == "logits"


def test_which_edges_are_real():
    g = GraphShape(3, 2)
    mask = g.real_edge_mask()
    assert mask[g.head_src(0, 1), g.mlp_dst(0)]  # an MLP reads its own layer's heads
    assert not mask[g.head_src(1, 0), g.head_dst(1, 1, "q")]  # heads of one layer do not read each other
    assert not mask[g.mlp_src(1), g.mlp_dst(1)]
    assert mask[g.mlp_src(0), g.head_dst(1, 0, "v")]
    assert mask[:, g.logits_dst].all()
    assert mask[0].sum() == g.n_dst  # the input feeds everything


def test_edge_names_round_trip():
    g = GraphShape(2, 2)
    for src, dst in zip(*np.nonzero(g.real_edge_mask()), strict=True):
        assert g.parse_edge(g.edge_name(src, dst)) == (src, dst)
    assert g.edge_name(g.head_src(0, 1), g.head_dst(1, 1, "k")) == "a0.h1->a1.h1<k>"
    with pytest.raises(ValueError, match="not a real edge"):
        g.parse_edge("m1->a0.h0<q>")
    with pytest.raises(ValueError, match="does not have"):
        g.parse_edge("a7.h0->logits")
    with pytest.raises(ValueError, match="not an edge name"):
        g.parse_edge("garbage")


@pytest.mark.parametrize(("layers", "heads", "kv"), [(1, 2, 1), (2, 4, 2), (3, 8, 2), (4, 32, 8)])
def test_grouped_query_graph_matches_closed_formula(layers, heads, kv):
    g = GraphShape(layers, heads, kv)
    assert g.n_dst == layers * (heads + 2 * kv + 1) + 1
    assert int(g.real_edge_mask().sum()) == g.n_edges
    assert len(set(g.dst_names)) == g.n_dst and len(g.dst_qkv) == g.n_dst == len(g.dst_stage)
    readers = g.dst_readers.sum(axis=1)
    for layer in range(layers):
        assert all(readers[g.head_dst(layer, h, "q")] == 1 for h in range(heads))
        assert all(readers[g.head_dst(layer, k, x)] == heads // kv for k in range(kv) for x in "kv")


def test_grouped_query_names_and_readers():
    g = GraphShape(2, 4, 2)
    assert g.dst_names[g.head_dst(1, 1, "k")] == "a1.kv1<k>" and g.dst_names[g.head_dst(1, 3, "q")] == "a1.h3<q>"
    assert [g.kv_head_of(h) for h in range(4)] == [0, 0, 1, 1]
    assert g.parse_edge("a0.h2->a1.kv1<v>") == (g.head_src(0, 2), g.head_dst(1, 1, "v"))
    assert g.parse_edge("a0.h2->a1.h3<k>") == g.parse_edge(
        "a0.h2->a1.kv1<k>"
    )  # a K input named by the query head reading it
    assert g.src_names[g.dst_module[g.head_dst(1, 1, "v")]] == "a1.h2"  # listed under the group's first head
    for src, dst in zip(*np.nonzero(g.real_edge_mask()), strict=True):
        assert g.parse_edge(g.edge_name(src, dst)) == (src, dst)
    with pytest.raises(ValueError, match="does not have"):
        g.parse_edge("a0.h0->a1.kv2<k>")
    with pytest.raises(ValueError, match="evenly"):
        GraphShape(2, 4, 3)


def test_plain_multi_head_attention_is_the_grouped_graph_with_one_head_per_group():
    assert GraphShape(3, 4) == GraphShape(3, 4, 4)
    assert GraphShape(3, 4).dst_names == GraphShape(3, 4, 4).dst_names
