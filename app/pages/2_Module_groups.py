"""Module groups: which heads and MLPs are forget-specific, retain-specific, shared — against
matched-control noise — and what ablating a group does to forget and test metrics.

UI only: grouping is ``cure_core.groups``, ablation ``cure_core.ablation``.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from state import analysis_page, context, start_gate

from analysis.ablation import MODES
from cure_core.ablation import ablation_table
from cure_core.circuits import AttributionSettings, CircuitContext
from cure_core.errors import CureError
from cure_core.groups import (
    CIRCUIT_KINDS,
    EMBEDDING_KINDS,
    GROUPS,
    NO_ROWS_NOTE,
    GroupSettings,
    ModuleGroups,
    default_corruption,
    groups_for_request,
)
from cure_core.settings import choices

GROUP_COLOURS = {
    "forget-specific": "#d62728",
    "retain-specific": "#1f77b4",
    "task-shared": "#9467bd",
    "outside": "#e5e5e5",
}

ws, request, model = analysis_page("Module groups")

with st.sidebar:
    st.header("Grouping")
    corruptions = choices(AttributionSettings, "corruption")
    corruption = st.selectbox(
        "corruption", corruptions, index=corruptions.index(default_corruption(request)), key="groups_corruption"
    )
    rule = st.radio(
        "in a set's circuit when",
        choices(GroupSettings, "threshold_rule"),
        horizontal=True,
        help="share: among the fewest modules holding this share of the importance",
    )
    threshold = (
        st.slider("threshold", 0.05, 1.0, 0.8, 0.05)
        if rule != "absolute"
        else st.number_input("absolute importance", 0.0, 1.0, 0.05, 0.01)
    )
    draws = st.slider("matched control draws (noise floor)", 2, 8, 5, key="groups_draws")
    n_prompts = st.select_slider("prompts per set", [64, 128, 256, 512], value=512, key="groups_prompts")


@st.cache_resource(
    show_spinner="Attributing forget, retain and the control sets (cached on disk after the first time) ...",
    max_entries=32,
)
def compute_groups(
    _ctx: CircuitContext, key: str, request_id: str, attribution_json: str, settings_json: str
) -> ModuleGroups:
    """The module groups of the model ``key`` on a request."""
    return groups_for_request(
        _ctx,
        AttributionSettings.model_validate_json(attribution_json),
        GroupSettings.model_validate_json(settings_json),
        quiet=True,
    )


@st.cache_data(show_spinner="Running the ablated model on forget and test probes ...", max_entries=128)
def ablation(_ctx: CircuitContext, key: str, request_id: str, modules: tuple[str, ...], mode: str, corruption: str):
    """Forget and test metrics of the model ``key`` with ``modules`` ablated."""
    return ablation_table(_ctx, list(modules), mode, corruption)  # type: ignore[arg-type]


if not ws.models.backend.capabilities.embedding_rows:
    st.info(f"{NO_ROWS_NOTE[0].upper()}{NO_ROWS_NOTE[1:]}. Heads, key/value heads and MLPs are grouped.")
attribution_settings = AttributionSettings(corruption=corruption, n_prompts=n_prompts)
group_settings = GroupSettings(threshold_rule=rule, threshold=float(threshold), null_draws=draws)
start_gate(
    ws,
    model,
    "groups_started",
    f"This page attributes your model on up to {n_prompts} prompts of the forget set, the retain set and {draws} "
    "matched control sets, then ablates the chosen groups on probe prompts.",
)
try:
    ctx = context(ws, model.key, request.id)
    groups = compute_groups(
        ctx, model.key, request.id, attribution_settings.model_dump_json(), group_settings.model_dump_json()
    )
except CureError as err:
    st.error(str(err))
    st.stop()

sep = groups.separability
weighted = groups.beyond_noise_weighted
null = f"over {sep['control_draws']} matched control draws"
cols = st.columns(5)
cols[0].metric(
    "separability",
    f"{sep['separability']:.2f}",
    help=(
        "log-ratio spread of forget vs retain importance, over the mean spread of matched control sets vs "
        f"retain; ≈ 1: no more different than random matched sets ({'beyond' if groups.beyond_noise else 'within'} "
        "noise)"
    ),
)
cols[1].metric(
    "spread forget / control",
    f"{sep['spread_forget']:.3f} / {sep['spread_control_mean']:.3f}",
    help=f"control ± {sep['spread_control_std']:.3f} {null}",
)
if weighted is None:
    cols[2].metric(
        "importance-weighted separability",
        "—",
        help="not in these groups (computed before it existed): restart the app (`cure app`) to recompute them",
    )
else:
    cols[2].metric(
        "importance-weighted separability",
        f"{sep['separability_weighted']:.2f}",
        help=(
            "the same ratio with each module's log ratio weighted by its mean importance (I_f + I_r)/2, and each "
            f"control draw's by (I_c + I_r)/2 ({'beyond' if weighted else 'within'} noise)"
        ),
    )
    cols[3].metric(
        "weighted spread forget / control",
        f"{sep['spread_forget_weighted']:.3f} / {sep['spread_control_mean_weighted']:.3f}",
        help=f"control ± {sep['spread_control_std_weighted']:.3f} {null}",
    )
cols[4].metric("heads/MLPs beyond their null", str(sep["significant_modules"]))
st.caption(
    "**Separability**: spread (std over heads and MLPs) of log(I_forget / I_retain), over the mean spread of "
    "log(I_control / I_retain) over the control draws; every module counts the same. **Importance-weighted**: "
    "the same with each module weighted by (I_forget + I_retain)/2, so modules that hardly matter, whose log "
    "ratios are mostly noise, weigh little. **Null** (both): the control spreads' mean ± sd; a ratio is beyond "
    "noise when it exceeds 1 by more than two control sds relative to the control mean."
)
st.caption(
    f"Module kinds grouped: {', '.join(groups.kinds)}. Attribution: {attribution_settings.method} "
    f"({attribution_settings.steps} steps), corruption {corruption}, signed metric."
)
for note in groups.warnings:
    if note != NO_ROWS_NOTE:  # said above, before grouping
        st.warning(note)

table = groups.table
modules = table[table["kind"].isin(["head", "mlp"])]  # what ablation knocks out
drawn = table[table["kind"].isin(CIRCUIT_KINDS)]
shape_layers = int(modules["layer"].max()) + 1
n_heads = int(modules["head"].max()) + 1
kv_rows = drawn[drawn["kind"] == "kv head"]
n_kv = int(kv_rows["head"].max()) + 1 if len(kv_rows) else 0
row_of = {"head": 0, "kv head": n_heads, "mlp": n_heads + n_kv}  # heatmap rows: heads, kv heads, MLP
n_rows = n_heads + n_kv + 1
codes = {g: i for i, g in enumerate(GROUPS)}
z = np.full((n_rows, shape_layers), np.nan)
hover = [["" for _ in range(shape_layers)] for _ in range(n_rows)]
for _, row in drawn.iterrows():
    r = row_of[row["kind"]] + (0 if row["kind"] == "mlp" else int(row["head"]))
    z[r, int(row["layer"])] = codes[row["group"]]
    hover[r][int(row["layer"])] = (
        f"{row['module']}: {row['group']}<br>I forget {row['importance_forget']:.3f}, I retain "
        f"{row['importance_retain']:.3f}<br>difference {row['difference']:+.3f}, null {row['null']:.3f}"
    )
row_labels = [f"head {h}" for h in range(n_heads)] + [f"kv head {g}" for g in range(n_kv)] + ["MLP"]
scale = [[i / (len(GROUPS) - 1), GROUP_COLOURS[g]] for i, g in enumerate(GROUPS)]
heat = go.Figure(
    go.Heatmap(
        z=z,
        text=hover,
        hoverinfo="text",
        colorscale=scale,
        zmin=0,
        zmax=len(GROUPS) - 1,
        showscale=False,
        xgap=3,
        ygap=3,
    )
)
heat.update_layout(
    xaxis={"tickvals": list(range(shape_layers)), "ticktext": [f"layer {i}" for i in range(shape_layers)]},
    yaxis={"tickvals": list(range(n_rows)), "ticktext": row_labels},
    height=120 + 60 * n_rows,
    margin={"t": 10, "b": 10},
    template="plotly_white",
)
left, right = st.columns([3, 2])
with left:
    st.plotly_chart(heat, width="stretch")
    colours = {"forget-specific": "red", "retain-specific": "blue", "task-shared": "violet"}
    st.caption(" · ".join(f":{colours.get(g, 'gray')}[{g}]" for g in GROUPS))
    if n_kv:
        st.caption(
            f"Grouped-query attention: {n_kv} key/value heads per layer, each read by {n_heads // n_kv} query "
            "heads; a kv head row sums its readers' importances and follows their group."
        )
with right:
    st.dataframe(groups.sizes(), width="stretch")
    rows = table[table["kind"].isin(EMBEDDING_KINDS)]
    if len(rows):
        st.caption(
            f"{len(rows)} embedding rows are forget-specific (used ≥ {group_settings.embedding_share:.0%} "
            f"by forget prompts): {', '.join(rows['module'].head(12))}{' …' if len(rows) > 12 else ''}"
        )

st.subheader("Ablate a group")
st.caption(
    "Knock out every head and MLP of the chosen groups and compare forget-set and test metrics with the "
    "intact model (256 seeded probe prompts each). Embedding rows and kv head rows (summaries of their "
    "reader heads) are not ablated here."
)
toggle_cols = st.columns(len(GROUPS) + 1)
chosen = [g for g, col in zip(GROUPS, toggle_cols, strict=False) if col.toggle(g, key=f"ablate-{g}", value=False)]
mode = toggle_cols[-1].selectbox(
    "ablation",
    MODES,
    help="zero: no output; mean: the mean output over the probe prompts; corrupt: the output on the corrupted prompt",
)
ablated_modules = tuple(modules.loc[modules["group"].isin(chosen), "module"])
if chosen and not ablated_modules:
    st.info(f"The chosen group(s) hold no head or MLP: {', '.join(chosen)}.")
result = ablation(ctx, model.key, request.id, ablated_modules, mode, corruption)
st.dataframe(result.style.format("{:.4f}", subset=[c for c in result.columns if c != "prompts"]), width="stretch")

st.subheader("All modules")
st.dataframe(table, width="stretch", hide_index=True)
