"""Plotly drawing of a circuit laid out by layer (UI only).

x = computation stage (input, then per layer its heads and its MLP, then logits), y = head
index (MLPs, input and logits centred). Edges are grouped into a few traces by width bin and
colour, since one Plotly line trace has a single width.
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


def positions(shape: GraphShape) -> dict[str, tuple[float, float]]:
    centre = (shape.n_heads - 1) / 2
    pos = {"input": (0.0, centre), "logits": (2.0 * shape.n_layers + 1, centre)}
    for layer in range(shape.n_layers):
        for head in range(shape.n_heads):
            pos[f"a{layer}.h{head}"] = (2.0 * layer + 1, float(head))
        pos[f"m{layer}"] = (2.0 * layer + 2, centre)
    return pos


def _target(shape: GraphShape, dst: int) -> str:
    owner = shape.dst_module[dst]
    return "logits" if owner < 0 else shape.src_names[owner]


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
    in_circuit = circuit.nodes() | (overlap_with.nodes() if overlap_with is not None else set())
    hover = []
    for name in names:
        lines = [f"<b>{name}</b>"] + [
            f"node score {k}: {v[shape.src_names.index(name)]:+.4f}"
            for k, v in node_scores.items()
            if name in shape.src_names
        ]
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
                "symbol": [
                    "square" if n.startswith("m") else "diamond" if n in ("input", "logits") else "circle"
                    for n in names
                ],
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
