"""A circuit as a ``networkx.DiGraph``, and its files: versioned JSON (round-trips), GraphML, CSV.

The JSON file (schema :data:`SCHEMA`, version :data:`SCHEMA_VERSION`) keeps every edge at full
resolution — q, k and v inputs of a head are separate edges — with its score on each set, so
``read_json`` rebuilds the exact circuit. The DiGraph (and so GraphML) has one edge per pair of
modules; an edge into a head lists the inputs it uses in ``qkv`` (e.g. ``"q,v"``) and sums their
scores, with the per-input scores kept as ``score_q`` … attributes.

With grouped-query attention the document records ``n_kv_heads`` (version 2; a version-1 file
has none and reads as plain multi-head attention). An edge into a shared K/V input is written
with a query head of its group as ``target`` (:meth:`Circuit.target_module`: one that is in the
circuit; ``a0.h1`` with ``qkv`` ``k`` stands for ``a0.kv0<k>`` when heads 0 and 1 share key/value
head 0), which :meth:`GraphShape.parse_edge` maps back to the key/value head, so the file
round-trips exactly.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Literal

import networkx as nx
import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from analysis.circuit import Circuit
from analysis.errors import AnalysisInputError
from analysis.graph import GraphShape
from analysis.io import atomic_write

SCHEMA = "cure-studio/circuit"
SCHEMA_VERSION = 2  # 2: n_kv_heads (grouped-query attention)
Format = Literal["json", "graphml", "csv"]
FORMATS: tuple[Format, ...] = ("json", "graphml", "csv")


class NodeRecord(BaseModel):
    name: str
    kind: Literal["input", "head", "mlp", "logits"]
    layer: int | None = None
    head: int | None = None
    scores: dict[str, float] = Field(default_factory=dict)


class EdgeRecord(BaseModel):
    source: str
    target: str
    qkv: Literal["q", "k", "v", ""] = ""
    scores: dict[str, float] = Field(default_factory=dict)


class CircuitDocument(BaseModel):
    """The JSON file of one circuit."""

    schema_name: Literal["cure-studio/circuit"] = Field(SCHEMA, alias="schema")
    version: int = SCHEMA_VERSION
    n_layers: int
    n_heads: int
    n_kv_heads: int | None = Field(None, description="key/value heads; None (version-1 files): as many as n_heads")
    primary: str = Field(description="the set whose scores define 'score' and 'sign' in GraphML/CSV")
    settings: dict[str, Any] = Field(default_factory=dict)
    nodes: list[NodeRecord]
    edges: list[EdgeRecord]

    model_config = {"populate_by_name": True}


def _node_kind(shape: GraphShape, name: str) -> tuple[str, int | None, int | None]:
    if name in ("input", "logits"):
        return name, (None if name == "input" else shape.n_layers), None
    layer, head = shape.module_layer_head(shape.src_names.index(name))
    return ("head" if head is not None else "mlp"), layer, head


def document(
    circuit: Circuit,
    edge_scores: dict[str, np.ndarray],
    node_scores: dict[str, np.ndarray],
    primary: str,
    settings: dict[str, Any] | None = None,
) -> CircuitDocument:
    """The circuit with each set's edge scores ``[n_src, n_dst]`` and node scores ``[n_src]``."""
    if primary not in edge_scores:
        raise AnalysisInputError(
            f"primary set {primary!r} has no scores", f"use one of the sets: {', '.join(edge_scores)}"
        )
    shape = circuit.shape
    edges = []
    for s, t in zip(*np.nonzero(circuit.edges), strict=True):
        owner = circuit.target_module(t)
        target = "logits" if owner < 0 else shape.src_names[owner]
        edges.append(
            EdgeRecord(
                source=shape.src_names[s],
                target=target,
                qkv=shape.dst_qkv[t],
                scores={k: float(v[s, t]) for k, v in edge_scores.items()},
            )
        )
    nodes = []
    for name in sorted(
        circuit.nodes(), key=lambda n: shape.src_names.index(n) if n in shape.src_names else shape.n_src
    ):
        kind, layer, head = _node_kind(shape, name)
        scores = {k: float(v[shape.src_names.index(name)]) for k, v in node_scores.items()} if name != "logits" else {}
        nodes.append(NodeRecord(name=name, kind=kind, layer=layer, head=head, scores=scores))
    return CircuitDocument(
        n_layers=shape.n_layers,
        n_heads=shape.n_heads,
        n_kv_heads=shape.kv_heads,
        primary=primary,
        settings=dict(settings or {}),
        nodes=nodes,
        edges=edges,
    )


def to_circuit(doc: CircuitDocument) -> tuple[Circuit, dict[str, np.ndarray]]:
    """The exact circuit of a document and each set's edge scores (zero off the circuit)."""
    shape = GraphShape(doc.n_layers, doc.n_heads, doc.n_kv_heads)
    names = [f"{e.source}->{e.target}" + (f"<{e.qkv}>" if e.qkv else "") for e in doc.edges]
    circuit = Circuit.from_edge_names(shape, names)
    sets = {k for e in doc.edges for k in e.scores}
    scores = {k: np.zeros((shape.n_src, shape.n_dst)) for k in sets}
    for name, edge in zip(names, doc.edges, strict=True):
        s, t = shape.parse_edge(name)
        for k, v in edge.scores.items():
            scores[k][s, t] = v
    return circuit, scores


def to_networkx(doc: CircuitDocument) -> nx.DiGraph:
    """Module-level DiGraph: node attributes kind/layer/head/``score_<set>``; edge attributes
    ``qkv``, ``score`` and ``sign`` (primary set), ``score_<set>``, and ``score_q``/``_k``/``_v``."""
    graph = nx.DiGraph(
        schema=SCHEMA,
        version=SCHEMA_VERSION,
        primary=doc.primary,
        n_layers=doc.n_layers,
        n_heads=doc.n_heads,
        n_kv_heads=doc.n_kv_heads or doc.n_heads,
    )
    for node in doc.nodes:
        attrs = {
            "kind": node.kind,
            "layer": -1 if node.layer is None else node.layer,
            "head": -1 if node.head is None else node.head,
        }
        graph.add_node(node.name, **attrs, **{f"score_{k}": v for k, v in node.scores.items()})
    for edge in doc.edges:
        data = graph.get_edge_data(edge.source, edge.target)
        if data is None:
            graph.add_edge(edge.source, edge.target, qkv="", **{f"score_{k}": 0.0 for k in edge.scores})
            data = graph.get_edge_data(edge.source, edge.target)
        if edge.qkv:
            data["qkv"] = ",".join(filter(None, [data["qkv"], edge.qkv]))
            data[f"score_{edge.qkv}"] = edge.scores.get(doc.primary, 0.0)
        for k, v in edge.scores.items():
            data[f"score_{k}"] += v
    for _, _, data in graph.edges(data=True):
        data["score"] = data.get(f"score_{doc.primary}", 0.0)
        data["sign"] = int(np.sign(data["score"]))
    return graph


def edge_table(doc: CircuitDocument) -> pd.DataFrame:
    """One row per full-resolution edge: source, target, qkv, score and sign (primary set),
    then ``score_<set>`` for every set."""
    rows = []
    for e in doc.edges:
        score = e.scores.get(doc.primary, 0.0)
        rows.append(
            {
                "source": e.source,
                "target": e.target,
                "qkv": e.qkv,
                "score": score,
                "sign": int(np.sign(score)),
                **{f"score_{k}": v for k, v in e.scores.items()},
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "source",
            "target",
            "qkv",
            "score",
            "sign",
            *sorted({f"score_{k}" for e in doc.edges for k in e.scores}),
        ],
    )


def export(doc: CircuitDocument, fmt: Format, path: Path) -> None:
    """Write ``doc`` as JSON, GraphML or a CSV edge list (atomically)."""
    if fmt == "json":
        atomic_write(path, lambda p: p.write_text(doc.model_dump_json(by_alias=True, indent=1)))
    elif fmt == "graphml":
        atomic_write(path, lambda p: nx.write_graphml(to_networkx(doc), p))
    elif fmt == "csv":
        atomic_write(path, lambda p: edge_table(doc).to_csv(p, index=False))
    else:
        raise AnalysisInputError(f"unknown export format {fmt!r}", f"use one of {', '.join(FORMATS)}")


def export_bytes(doc: CircuitDocument, fmt: Format) -> bytes:
    """The file contents, for download buttons."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"circuit.{fmt}"
        export(doc, fmt, path)
        return path.read_bytes()


def read_json(path: Path) -> CircuitDocument:
    """Load a JSON circuit file; rejects other schemas and newer versions with a clear message."""
    text = Path(path).read_text()
    doc = CircuitDocument.model_validate_json(text)
    if doc.version > SCHEMA_VERSION:
        raise AnalysisInputError(
            f"{path} uses circuit schema version {doc.version}; this CURE Studio reads up to {SCHEMA_VERSION}",
            "upgrade CURE Studio",
        )
    return doc
