"""Circuit selection, pruning, overlap and export round trips (pure numpy, no model)."""

from __future__ import annotations

import json

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from analysis.circuit import Circuit, by_share, by_threshold, greedy, prune, select, share_count, size_curve, top_n
from analysis.compare import jaccard, normalised, overlap
from analysis.export import CircuitDocument, document, export, read_json, to_circuit, to_networkx
from analysis.graph import GraphShape

SHAPE = GraphShape(3, 2)


def _scores(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(SHAPE.n_src, SHAPE.n_dst)) * SHAPE.real_edge_mask()


def test_top_n_threshold_and_share_pick_the_largest_edges():
    scores = _scores()
    magnitude = np.sort(np.abs(scores[SHAPE.real_edge_mask()]))[::-1]
    assert top_n(SHAPE, scores, 7).n_edges == 7
    assert np.abs(scores[top_n(SHAPE, scores, 7).edges]).min() == pytest.approx(magnitude[6])
    assert by_threshold(SHAPE, scores, magnitude[9]).n_edges == 10
    share = by_share(SHAPE, scores, 0.5)
    kept = np.abs(scores[share.edges]).sum()
    assert kept >= 0.5 * magnitude.sum() and kept - magnitude[share.n_edges - 1] < 0.5 * magnitude.sum()
    assert by_share(SHAPE, scores, 1.0).n_edges == SHAPE.n_edges


def test_greedy_circuits_are_connected_to_the_logits():
    circuit = greedy(SHAPE, _scores(), 12)
    assert circuit.n_edges == 12
    assert prune(circuit).n_edges <= 12
    # every edge's destination module is the logits or a module with an outgoing edge
    _src, dst = np.nonzero(circuit.edges)
    for t in dst:
        owner = SHAPE.dst_module[t]
        assert owner < 0 or circuit.edges[owner].any()


def test_prune_keeps_only_input_to_logits_paths():
    edges = np.zeros((SHAPE.n_src, SHAPE.n_dst), bool)
    chain = ["input->a0.h1<v>", "a0.h1->m1", "m1->logits"]
    dangling = ["a1.h0->logits", "input->m2"]  # a1.h0 has no input; m2 reaches nothing
    for name in chain + dangling:
        edges[SHAPE.parse_edge(name)] = True
    pruned = prune(Circuit(SHAPE, edges))
    assert sorted(pruned.edge_names()) == sorted(chain)
    assert pruned.nodes() == {"input", "a0.h1", "m1", "logits"}
    assert prune(Circuit.full(SHAPE)).n_edges == SHAPE.n_edges


GQA = GraphShape(2, 4, 2)  # a{l}.h0, h1 read a{l}.kv0; h2, h3 read a{l}.kv1


def _reference_prune(circuit: Circuit) -> np.ndarray:
    """Edges on an input→logits path, found by networkx on the graph of modules and inputs,
    where every input leads to each module that reads it (``dst_readers``)."""
    shape = circuit.shape
    graph = nx.DiGraph()
    graph.add_nodes_from([("s", 0), ("d", shape.logits_dst)])
    for s, t in zip(*np.nonzero(circuit.edges), strict=True):
        graph.add_edge(("s", s), ("d", t))
        for r in np.flatnonzero(shape.dst_readers[t]):
            graph.add_edge(("d", t), ("s", r))
    from_input = nx.descendants(graph, ("s", 0)) | {("s", 0)}
    to_logits = nx.ancestors(graph, ("d", shape.logits_dst)) | {("d", shape.logits_dst)}
    keep = np.zeros_like(circuit.edges)
    for s, t in zip(*np.nonzero(circuit.edges), strict=True):
        keep[s, t] = ("s", s) in from_input and ("d", t) in to_logits
    return keep


@pytest.mark.parametrize("shape", [SHAPE, GQA, GraphShape(3, 4, 1)])
def test_prune_equals_a_reachability_reference_with_shared_kv_inputs(shape):
    rng = np.random.default_rng(1)
    for density in (0.02, 0.05, 0.1, 0.3):
        circuit = Circuit(shape, shape.real_edge_mask() & (rng.random((shape.n_src, shape.n_dst)) < density))
        np.testing.assert_array_equal(prune(circuit).edges, _reference_prune(circuit))


def test_a_shared_kv_input_lives_through_any_of_its_reader_heads():
    chain = ["input->a0.kv0<k>", "a0.h1->logits"]  # kv0 is read by a0.h0 (its first reader) and a0.h1
    dangling = ["input->a0.kv1<v>", "a0.h0->a1.h3<q>"]  # no reader of kv1 reaches the logits; a1.h3 reaches nothing
    pruned = prune(Circuit.from_edge_names(GQA, chain + dangling))
    assert sorted(pruned.edge_names()) == sorted(["input->a0.kv0<k>", "a0.h1->logits"])
    assert pruned.nodes() == {"input", "a0.h1", "logits"}  # the alive reader, not the first one
    assert Circuit.from_edge_names(GQA, ["input->a0.kv1<v>"]).nodes() == {"input", "a0.h2"}


def test_greedy_opens_shared_kv_inputs_for_every_reader_head():
    scores = np.full((GQA.n_src, GQA.n_dst), 1e-3) * GQA.real_edge_mask()
    scores[GQA.parse_edge("a0.h1->logits")] = 3.0
    scores[GQA.parse_edge("input->a0.kv0<v>")] = 2.0
    circuit = greedy(GQA, scores, 2)
    assert sorted(circuit.edge_names()) == sorted(["a0.h1->logits", "input->a0.kv0<v>"])
    grown = greedy(GQA, _scores_for(GQA), 40)
    assert grown.n_edges == 40
    src = set(np.nonzero(grown.edges)[0].tolist())
    for t in np.nonzero(grown.edges)[1]:  # every destination is the logits or read by a module in the circuit
        assert t == GQA.logits_dst or any(r in src for r in np.flatnonzero(GQA.dst_readers[t]))


def _scores_for(shape: GraphShape, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(shape.n_src, shape.n_dst)) * shape.real_edge_mask()


def test_select_refuses_unknown_rules():
    with pytest.raises(ValueError, match="top-n"):
        select(SHAPE, _scores(), "random", 3)  # type: ignore[arg-type]


def test_overlap_and_normalisation():
    a, b = top_n(SHAPE, _scores(0), 20), top_n(SHAPE, _scores(1), 20)
    assert overlap(a, a) == {"edges_jaccard": 1.0, "nodes_jaccard": 1.0}
    expected = len(set(a.edge_names()) & set(b.edge_names())) / len(set(a.edge_names()) | set(b.edge_names()))
    assert overlap(a, b)["edges_jaccard"] == pytest.approx(expected)
    assert jaccard(set(), set()) == 1.0
    assert np.abs(normalised(_scores())).sum() == pytest.approx(1.0)


def _doc() -> CircuitDocument:
    forget, retain = _scores(0), _scores(1)
    circuit = select(SHAPE, forget, "top-n", 25)
    return document(
        circuit,
        {"forget": forget, "retain": retain},
        {"forget": forget.sum(1), "retain": retain.sum(1)},
        "forget",
        {"method": "eap-ig"},
    )


def test_json_round_trip_is_exact(tmp_path):
    doc = _doc()
    export(doc, "json", tmp_path / "c.json")
    assert json.loads((tmp_path / "c.json").read_text())["schema"] == "cure-studio/circuit"
    again = read_json(tmp_path / "c.json")
    circuit, scores = to_circuit(again)
    original, _ = to_circuit(doc)
    assert np.array_equal(circuit.edges, original.edges)
    np.testing.assert_allclose(scores["retain"][circuit.edges], _scores(1)[circuit.edges])
    assert again.settings == {"method": "eap-ig"}


def test_a_grouped_query_circuit_round_trips_with_its_kv_heads(tmp_path):
    forget = _scores_for(GQA, 2)
    circuit = select(GQA, forget, "top-n", 60)
    assert any(GQA.dst_qkv[t] in ("k", "v") for t in np.nonzero(circuit.edges)[1])
    doc = document(circuit, {"forget": forget}, {"forget": forget.sum(1)}, "forget")
    assert doc.n_kv_heads == 2
    export(doc, "json", tmp_path / "gqa.json")
    again, scores = to_circuit(read_json(tmp_path / "gqa.json"))
    assert again.shape == GQA and np.array_equal(again.edges, circuit.edges)
    np.testing.assert_allclose(scores["forget"][circuit.edges], forget[circuit.edges])
    assert {e.target for e in doc.edges} <= {n.name for n in doc.nodes}  # a shared K/V edge names a node
    assert to_networkx(doc).graph["n_kv_heads"] == 2


def test_version_1_documents_without_kv_heads_still_read(tmp_path):
    payload = json.loads(_doc().model_dump_json(by_alias=True))
    assert payload["n_kv_heads"] == SHAPE.n_heads
    del payload["n_kv_heads"]
    payload["version"] = 1
    (tmp_path / "old.json").write_text(json.dumps(payload))
    old = read_json(tmp_path / "old.json")
    assert old.n_kv_heads is None
    circuit, _ = to_circuit(old)
    assert circuit.shape == SHAPE and np.array_equal(circuit.edges, to_circuit(_doc())[0].edges)


def test_newer_schema_versions_are_refused(tmp_path):
    payload = json.loads(_doc().model_dump_json(by_alias=True))
    payload["version"] = 99
    (tmp_path / "new.json").write_text(json.dumps(payload))
    with pytest.raises(ValueError, match="upgrade"):
        read_json(tmp_path / "new.json")


def test_networkx_graphml_and_csv(tmp_path):
    doc = _doc()
    graph = to_networkx(doc)
    assert isinstance(graph, nx.DiGraph)
    assert set(graph.nodes) == {n.name for n in doc.nodes}
    for _, attrs in graph.nodes(data=True):
        assert {"kind", "layer", "head", "score_forget", "score_retain"} <= set(attrs) or attrs["kind"] == "logits"
    total = sum(d["score"] for _, _, d in graph.edges(data=True))
    assert total == pytest.approx(sum(e.scores["forget"] for e in doc.edges))
    for _, _, attrs in graph.edges(data=True):
        assert attrs["sign"] == np.sign(attrs["score"])
    export(doc, "graphml", tmp_path / "c.graphml")
    assert set(nx.read_graphml(tmp_path / "c.graphml").nodes) == set(graph.nodes)
    export(doc, "csv", tmp_path / "c.csv")
    table = pd.read_csv(tmp_path / "c.csv", keep_default_na=False)
    assert len(table) == len(doc.edges)
    assert {"source", "target", "qkv", "score", "sign", "score_forget", "score_retain"} <= set(table.columns)


def test_jaccard_convention():
    """One Jaccard for circuits and studies: in [0, 1], 1 for a set and itself, and two empty
    sets are identical (1.0) unless the caller asks for ``None`` (nothing to compare)."""
    assert jaccard({"a", "b"}, {"b", "c"}) == pytest.approx(1 / 3)
    assert jaccard({"a", "b"}, {"a", "b"}) == 1.0 and jaccard({"a"}, set()) == 0.0
    assert jaccard(set(), set()) == 1.0 and jaccard(set(), set(), empty=None) is None
    assert jaccard({"a"}, {"b"}, empty=None) == 0.0


def test_share_count_is_the_one_cumulative_share_rule():
    values = np.array([0.5, 0.3, 0.1, 0.1])
    assert [share_count(values, s) for s in (0.0, 0.5, 0.8, 0.81, 1.0)] == [0, 1, 2, 3, 4]
    assert share_count(np.zeros(3), 0.5) == 0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        share_count(values, 1.5)
    scores = _scores()
    magnitude = np.sort(np.abs(scores[SHAPE.real_edge_mask()]))[::-1]
    for share in (0.0, 0.3, 0.5, 0.9, 1.0):
        assert by_share(SHAPE, scores, share).n_edges == share_count(magnitude, share)


def test_views_and_size_curve():
    from analysis.attribution import Attribution
    from analysis.compare import VIEWS, differential_edges, view_scores

    forget, retain = (
        Attribution(SHAPE, "eap", 1, _scores(seed), _scores(seed)[None], np.zeros(2), np.zeros(2)) for seed in (0, 1)
    )
    views = view_scores(forget, retain)
    assert tuple(views) == VIEWS and views["forget"] is forget.scores
    np.testing.assert_array_equal(views["difference"], differential_edges(forget, retain))
    curve = size_curve(SHAPE, _scores(), [0, 5, SHAPE.n_edges])
    assert [c.n_edges for c in curve][::2] == [0, SHAPE.n_edges]
    assert np.array_equal(curve[1].edges, select(SHAPE, _scores(), "top-n", 5).edges)
