"""Plotly drawing of a circuit laid out by layer (UI only).

x = computation stage (input, then per layer its heads and its MLP, then logits), y = head
index (MLPs, input and logits centred). Edges are grouped into a few traces by width bin and
colour, since one Plotly line trace has a single width.

Grouped-query attention (:attr:`GraphShape.grouped`): each key/value head ``a{l}.kv{g}`` is a
node of its own just before its layer's heads, centred on the query heads that read it; K and
V edges end there, and dotted lines join it to its reader heads (:attr:`GraphShape.dst_readers`).
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from analysis.circuit import Circuit
from analysis.graph import GraphShape

WIDTHS = (1.0, 2.5, 4.5, 7.0)
SIGN_COLOURS = {1: "#d62728", -1: "#1f77b4"}
QKV_COLOURS = {"q": "#2ca02c", "k": "#9467bd", "v": "#ff7f0e", "": "#7f7f7f"}
OVERLAP_COLOURS = {"both": "#7f7f7f", "forget only": "#d62728", "retain only": "#1f77b4"}


KV_OFFSET = 0.4  # how far left of its layer's query heads a key/value head sits


def positions(shape: GraphShape) -> dict[str, tuple[float, float]]:
    """Plot position of every node: modules, and key/value heads of a grouped model."""
    centre = (shape.n_heads - 1) / 2
    pos = {"input": (0.0, centre), "logits": (2.0 * shape.n_layers + 1, centre)}
    for layer in range(shape.n_layers):
        if shape.grouped:
            for kv in range(shape.kv_heads):
                middle = kv * shape.group_size + (shape.group_size - 1) / 2
                pos[kv_node(layer, kv)] = (2.0 * layer + 1 - KV_OFFSET, middle)
        for head in range(shape.n_heads):
            pos[f"a{layer}.h{head}"] = (2.0 * layer + 1, float(head))
        pos[f"m{layer}"] = (2.0 * layer + 2, centre)
    return pos


def kv_node(layer: int, kv: int) -> str:
    return f"a{layer}.kv{kv}"


def kv_readers(shape: GraphShape, name: str) -> list[str]:
    """The query heads that read key/value head ``name`` (``a{l}.kv{g}``)."""
    dst = shape.dst_names.index(f"{name}<k>")
    return [shape.src_names[s] for s in shape.dst_readers[dst].nonzero()[0]]


def _target(shape: GraphShape, dst: int) -> str:
    """The node an edge into ``dst`` is drawn to: the key/value head for a shared K/V input,
    else the module that reads it."""
    if shape.grouped and shape.dst_qkv[dst] in ("k", "v"):
        return shape.dst_names[dst].split("<")[0]
    owner = shape.dst_module[dst]
    return "logits" if owner < 0 else shape.src_names[owner]


def _kv_links(shape: GraphShape, fig: go.Figure, pos: dict[str, tuple[float, float]]) -> None:
    """Dotted lines from each key/value head to the query heads that read it."""
    xs: list[float | None] = []
    ys: list[float | None] = []
    for layer in range(shape.n_layers):
        for kv in range(shape.kv_heads):
            (x0, y0) = pos[kv_node(layer, kv)]
            for head in kv_readers(shape, kv_node(layer, kv)):
                x1, y1 = pos[head]
                xs += [x0, x1, None]
                ys += [y0, y1, None]
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=ys,
            mode="lines",
            line={"width": 1, "color": "#999", "dash": "dot"},
            hoverinfo="skip",
            name="key/value head → its query heads",
        )
    )


def circuit_figure(
    circuit: Circuit,
    scores: np.ndarray,
    node_scores: dict[str, np.ndarray],
    colour_by: str = "sign",
    overlap_with: Circuit | None = None,
    selected: str | None = None,
) -> go.Figure:
    """``colour_by``: ``sign`` of ``scores``, ``qkv`` input, or ``overlap`` with ``overlap_with``
    (edges in both, forget only, retain only)."""
    shape = circuit.shape
    pos = positions(shape)
    edges = list(zip(*np.nonzero(circuit.edges), strict=True))
    magnitude = np.array([abs(scores[s, t]) for s, t in edges]) if edges else np.zeros(0)
    bins = np.digitize(magnitude, np.quantile(magnitude, [0.5, 0.8, 0.95])) if len(magnitude) else np.zeros(0, int)
    fig = go.Figure()
    if shape.grouped:
        _kv_links(shape, fig, pos)
    traces: dict[tuple[str, int], tuple[list[float | None], list[float | None]]] = {}
    for (s, t), width_bin in zip(edges, bins, strict=True):
        if colour_by == "qkv":
            key = shape.dst_qkv[t]
        elif colour_by == "overlap" and overlap_with is not None:
            key = "both" if overlap_with.edges[s, t] else "forget only"
        else:
            key = "+" if scores[s, t] >= 0 else "−"
        xs, ys = traces.setdefault((key, int(width_bin)), ([], []))
        (x0, y0), (x1, y1) = pos[shape.src_names[s]], pos[_target(shape, t)]
        xs += [x0, x1, None]
        ys += [y0, y1, None]
    if colour_by == "overlap" and overlap_with is not None:
        for s, t in zip(*np.nonzero(overlap_with.edges & ~circuit.edges), strict=True):
            xs, ys = traces.setdefault(("retain only", 0), ([], []))
            (x0, y0), (x1, y1) = pos[shape.src_names[s]], pos[_target(shape, t)]
            xs += [x0, x1, None]
            ys += [y0, y1, None]
    for (key, width_bin), (xs, ys) in sorted(traces.items()):
        colour = {"+": SIGN_COLOURS[1], "−": SIGN_COLOURS[-1], **QKV_COLOURS, **OVERLAP_COLOURS}.get(key, "#7f7f7f")
        label = {"+": "score > 0", "−": "score < 0"}.get(key, key or "MLP/logits input")
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines",
                line={"width": WIDTHS[width_bin], "color": colour},
                opacity=0.55,
                hoverinfo="skip",
                name=label,
                legendgroup=key,
                showlegend=width_bin == 0 or (key, 0) not in traces,
            )
        )
    names = list(pos)
    in_circuit = _drawn_nodes(circuit) | (_drawn_nodes(overlap_with) if overlap_with is not None else set())
    hover = []
    for name in names:
        lines = [f"<b>{name}</b>"]
        if ".kv" in name:
            lines.append(f"key/value head read by {', '.join(kv_readers(shape, name))}")
        elif name in shape.src_names:
            lines += [f"node score {k}: {v[shape.src_names.index(name)]:+.4f}" for k, v in node_scores.items()]
        hover.append("<br>".join(lines))
    fig.add_trace(
        go.Scatter(
            x=[pos[n][0] for n in names],
            y=[pos[n][1] for n in names],
            mode="markers+text",
            text=names,
            textposition="top center",
            customdata=names,
            hovertext=hover,
            hoverinfo="text",
            marker={
                "size": [22 if n == selected else 16 for n in names],
                "color": ["#222" if n in in_circuit else "#ddd" for n in names],
                "line": {"width": [3 if n == selected else 1 for n in names], "color": "#ff7f0e"},
                "symbol": [_symbol(n) for n in names],
            },
            name="modules",
            showlegend=False,
        )
    )
    ticks = [0] + [2 * layer + 1.5 for layer in range(shape.n_layers)] + [2 * shape.n_layers + 1]
    labels = ["input"] + [f"layer {layer}" for layer in range(shape.n_layers)] + ["logits"]
    fig.update_layout(
        xaxis={"tickvals": ticks, "ticktext": labels, "showgrid": False, "zeroline": False},
        yaxis={"title": "head", "tickvals": list(range(shape.n_heads)), "showgrid": False, "zeroline": False},
        height=420 + 40 * shape.n_heads,
        margin={"l": 40, "r": 20, "t": 30, "b": 30},
        template="plotly_white",
        clickmode="event+select",
        legend={"orientation": "h"},
    )
    return fig


def _symbol(name: str) -> str:
    if name in ("input", "logits"):
        return "diamond"
    if name.startswith("m"):
        return "square"
    return "triangle-right" if ".kv" in name else "circle"


def _drawn_nodes(circuit: Circuit) -> set[str]:
    """The nodes the circuit's edges are drawn between (key/value heads as nodes of their own)."""
    shape = circuit.shape
    sources = {shape.src_names[s] for s in np.flatnonzero(circuit.edges.any(axis=1))}
    return sources | {_target(shape, int(t)) for t in np.flatnonzero(circuit.edges.any(axis=0))}
