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
