"""Circuits: the forget and retain circuits of a request, their exact faithfulness, export.

UI only: attribution, selection, faithfulness and export come from ``analysis`` and
``cure_core.circuits``; attributions are cached on disk, so a second visit is instant.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from circuit_plot import circuit_figure, kv_readers
from state import analysis_page, attribution, context, request_picker, start_gate
from views import real_positions, show_prompt, token_labels

from analysis.activations import attention_pattern
from analysis.circuit import Circuit, select, size_curve
from analysis.compare import VIEWS, overlap, view_scores
from analysis.export import FORMATS, document, export_bytes
from analysis.faithfulness import curve_sizes
from cure_core.circuits import AttributionSettings, CircuitContext, measure_circuits
from cure_core.errors import CureError
from cure_core.groups import default_corruption
from cure_core.settings import choices

ws, request, model = analysis_page("Circuits")

with st.sidebar:
    st.header("Attribution")
    request = request_picker(ws, request, key="circuits_request")
    methods = choices(AttributionSettings, "method")
    method = st.radio(
        "method",
        methods,
        index=methods.index(AttributionSettings.model_fields["method"].default),
        horizontal=True,
        key="circuits_method",
    )
    steps = st.slider("EAP-IG steps", 1, 20, 5, disabled=method == "eap")
    corruptions = choices(AttributionSettings, "corruption")
    corruption = st.selectbox(
        "corruption",
        corruptions,
        index=corruptions.index(default_corruption(request)),
        help=AttributionSettings.model_fields["corruption"].description,
    )
    metric = st.radio(
        "metric",
        choices(AttributionSettings, "metric"),
        horizontal=True,
        help="signed: logit(Yes) − logit(No) × ±1 by label",
    )
    n_prompts = st.select_slider("prompts per set", [64, 128, 256, 512], value=512, key="n_prompts")
    st.header("Circuit")
    view = st.radio(
        "view",
        [*VIEWS, "overlap"],
        key="view",
        horizontal=True,
        help="difference: normalised forget − retain scores; overlap: forget vs retain circuits",
    )
    rule = st.radio("select by", ["top-n", "share", "threshold"], horizontal=True)
    colour_by = st.radio("colour edges by", ["sign", "qkv"], horizontal=True, disabled=view == "overlap")

settings = AttributionSettings(method=method, steps=steps, corruption=corruption, metric=metric, n_prompts=n_prompts)
start_gate(
    ws,
    model,
    "circuits_started",
    f"This page attributes every edge of your model with {method} on up to {n_prompts} forget and {n_prompts} "
    "retain prompts, then measures faithfulness on held-out prompts.",
)
try:
    ctx: CircuitContext = context(ws, model.key, request.id)
    attributions = {
        name: attribution(ctx, model.key, request.id, name, settings.model_dump_json()) for name in ("forget", "retain")
    }
except CureError as err:
    st.error(str(err))
    st.stop()
shape = attributions["forget"].shape
dropped = {name: int(a.settings.get("dropped_pairs") or 0) for name, a in attributions.items()}
if any(dropped.values()):
    st.caption(
        "Prompts without a same-length corrupted partner were left out of attribution: "
        + ", ".join(f"{n} on {name}" for name, n in dropped.items())
        + " (a text model's corruptions swap titles of equal token length)."
    )
scores = view_scores(attributions["forget"], attributions["retain"])
shown = scores["forget" if view == "overlap" else view]

if rule == "top-n":
    value: float = st.slider(
        "edges kept (top-n by |score|, then pruned to input→logits paths)",
        1,
        shape.n_edges,
        min(100, shape.n_edges),
        key="top_n",
    )
elif rule == "share":
    value = st.slider("cumulative share of total |score|", 0.05, 1.0, 0.8, 0.05)
else:
    top = float(np.abs(shown).max()) or 1.0
    value = st.slider("|score| threshold", 0.0, top, top / 10, top / 200, format="%.5f")


@st.cache_data(show_spinner="Measuring exact faithfulness on held-out prompts ...", max_entries=256)
def exact_faithfulness(
    _ctx: CircuitContext, key: str, set_name: str, _circuits: list[Circuit], settings_json: str
) -> list[dict[str, float]]:
    """F of each circuit on the set's evaluation prompts (disjoint from the attribution prompts);
    ``key`` names the circuits, the request and the model."""
    values = measure_circuits(
        _ctx, set_name, AttributionSettings.model_validate_json(settings_json), _circuits, quiet=True
    )
    return [{"edges": f.n_edges, "F": f.value, "clean": f.metric_clean, "corrupt": f.metric_corrupt} for f in values]


def measured(set_name: str, circuit: Circuit) -> dict[str, float]:
    key = hashlib.sha256(circuit.edges.tobytes()).hexdigest()[:16] + request.id + model.key
    return exact_faithfulness(ctx, key, set_name, [circuit], settings.model_dump_json())[0]


circuits = {name: select(shape, scores[name], rule, value) for name in VIEWS}
main_circuit = (
    circuits["difference"] if view == "difference" else circuits["forget"] if view == "overlap" else circuits[view]
)
faith_sets = ["forget", "retain"] if view == "overlap" else ["forget" if view == "difference" else view]

cols = st.columns(len(faith_sets) + 2)
for col, set_name in zip(cols, faith_sets, strict=False):
    result = measured(set_name, circuits["difference"] if view == "difference" else circuits[set_name])
    col.metric(
        f"faithfulness F on {set_name}",
        f"{result['F']:.3f}",
        help=(
            "exact: every edge outside the circuit patched to its corrupted value; m(clean) "
            f"{result['clean']:+.3f}, m(corrupt) {result['corrupt']:+.3f}"
        ),
    )
cols[-2].metric("edges / nodes", f"{main_circuit.n_edges} / {len(main_circuit.nodes())}")
o = overlap(circuits["forget"], circuits["retain"])
cols[-1].metric(
    "forget–retain edge Jaccard",
    f"{o['edges_jaccard']:.3f}",
    help="the matched-control noise floor is on the command line: `cure circuit`",
)
if view == "difference":
    st.caption(
        "Difference view: edges ranked by |normalised forget score − normalised retain score|; F is "
        "measured on forget prompts."
    )

node_scores = {name: a.node_scores for name, a in attributions.items()}
selected = st.session_state.get("selected_node")
figure = circuit_figure(
    main_circuit,
    shown,
    node_scores,
    "overlap" if view == "overlap" else colour_by,
    circuits["retain"] if view == "overlap" else None,
    selected,
)
event = st.plotly_chart(figure, on_select="rerun", selection_mode="points", key="circuit_chart", width="stretch")
points = getattr(getattr(event, "selection", None), "points", None) or []
clicked = next((p.get("customdata") for p in points if p.get("customdata")), None)
if clicked and clicked != selected:
    st.session_state["selected_node"] = clicked
    st.rerun()

left, right = st.columns(2)
with left:
    st.subheader("Faithfulness against circuit size")
    set_name = faith_sets[0]
    sizes = curve_sizes(shape.n_edges, 10)
    ranking = scores["difference"] if view == "difference" else scores[set_name]
    key = f"curve-{view}-{request.id}-{model.key}"
    curve = exact_faithfulness(ctx, key, set_name, size_curve(shape, ranking, sizes), settings.model_dump_json())
    fig = go.Figure(
        go.Scatter(
            x=sizes,
            y=[c["F"] for c in curve],
            mode="lines+markers",
            text=[f"{c['edges']} edges after pruning" for c in curve],
        )
    )
    fig.update_layout(
        xaxis_title="top-n edges requested",
        yaxis_title="F",
        xaxis_type="log",
        height=320,
        template="plotly_white",
        margin={"t": 10},
    )
    st.plotly_chart(fig, width="stretch")
with right:
    st.subheader("Module")
    if not selected:
        st.caption("Click a node in the graph to see its scores and, for a head, its attention pattern.")
    elif ".kv" in selected:
        st.caption(
            f"{selected}: a key/value head (grouped-query attention), read by "
            f"{', '.join(kv_readers(shape, selected))}; click one of them for its attention pattern."
        )
    else:
        index = shape.src_names.index(selected) if selected in shape.src_names else None
        if index is not None:
            st.dataframe(
                pd.DataFrame({"node score": {k: float(v[index]) for k, v in node_scores.items()}}), width="stretch"
            )
        layer, head = shape.module_layer_head(index) if index is not None else (None, None)
        if head is not None:
            forget = ctx.sets.forget
            which = st.number_input("forget-set prompt #", 0, len(forget) - 1, 0)
            batch = ctx.rec.encode(ctx.samples, forget[[which]])
            keep = real_positions(batch.input_ids, batch.attention_mask)
            with ctx.rec.lock:  # the bridge is shared with other sessions' hooked runs
                pattern = attention_pattern(ctx.bridge, batch.input_ids, layer, head)[np.ix_(keep, keep)]
            labels = token_labels(ctx.rec, batch.input_ids, batch.attention_mask, ws.data.titles)
            heat = go.Figure(go.Heatmap(z=pattern, x=labels, y=labels, colorscale="Blues"))
            heat.update_layout(
                height=420 if len(labels) < 40 else 720,
                yaxis_autorange="reversed",
                xaxis_title="attended (key)",
                yaxis_title="attending (query)",
                margin={"t": 10},
            )
            st.plotly_chart(heat, width="stretch")
            with st.expander("the prompt as text"):
                show_prompt(ctx.rec, ctx.samples, int(forget[which]), ws.data.titles, "Forget prompt")

st.subheader("Export")
doc = document(
    main_circuit,
    scores,
    node_scores,
    primary="forget" if view in ("overlap", "difference") else view,
    settings={**settings.model_dump(), "view": view, "rule": rule, "value": value, "request": request.id},
)
for col, fmt in zip(st.columns(len(FORMATS)), FORMATS, strict=True):
    col.download_button(
        f"download {fmt}", export_bytes(doc, fmt), file_name=f"circuit-{request.id}-{view}.{fmt}", key=f"export-{fmt}"
    )
