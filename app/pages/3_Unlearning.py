"""Unlearning: run a method on a copy of the chosen model — its full weights, or a LoRA adapter
trained on top — with a live per-step chart, then compare it with Original and Retrain and with
this browser session's other runs on the same model.

UI only: runs are ``cure_core.unlearning`` (cached under ``cache/runs``); each browser session
keeps its own list of runs per model.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from state import analysis_page, poll_job, request_picker
from views import NO_RETRAIN

from cure_core.errors import CureError
from cure_core.jobs import BackgroundJob
from cure_core.settings import choices
from cure_core.unlearning.compare import comparison_table, pareto_figure, reference_rows, run_mode
from cure_core.unlearning.methods import METHODS, UnlearnConfig
from cure_core.unlearning.runs import checkpoint_archive, get_run, load_history

ws, request, model = analysis_page("Unlearning")
session = st.session_state.setdefault("unlearning", {}).setdefault(model.key, {"runs": [], "active": None})

with st.sidebar:
    st.header("Request")
    request = request_picker(ws, request, key="unlearn_request")

finished = session["active"]
if finished is not None and finished["job"].finished:
    session["active"] = None
    if finished["job"].error:
        st.error(finished["job"].error)
    else:
        session["runs"].append(finished["job"].result)

lora_default = ws.models.backend.capabilities.costly_scoring  # a large model: an adapter by default
with st.form("run_form"):
    cols = st.columns(4)
    method = cols[0].selectbox("method", list(METHODS), format_func=lambda m: METHODS[m].label, key="method")
    strength = cols[1].number_input(
        "strength (Adam learning rate)",
        1e-6,
        1e-1,
        METHODS[method].default_strength(lora_default),
        format="%.0e",
        key="strength",
        help=(
            f"{METHODS[method].help}; sweep grid: {', '.join(f'{s:g}' for s in METHODS[method].grid())} on the "
            f"full weights, {', '.join(f'{s:g}' for s in METHODS[method].grid(lora=True))} through a LoRA"
        ),
    )
    steps = cols[2].number_input("steps", 1, 1000, 60, key="steps")
    forget_loss = cols[3].selectbox(
        "forget objective (PCGrad, SAGO, CURE)", choices(UnlearnConfig, "forget_loss"), key="forget_loss"
    )
    cols = st.columns(3)
    retain_rule = cols[0].selectbox("CURE: retain-specific modules", choices(UnlearnConfig, "retain_rule"))
    shared_rule = cols[1].selectbox("CURE: task-shared modules", choices(UnlearnConfig, "shared_rule"))
    row_rule = cols[2].selectbox(
        "CURE: forget-specific embedding rows",
        choices(UnlearnConfig, "row_rule"),
        help="reset: set once to what Retrain reads (<unk_user>), then frozen",
    )
    cols = st.columns([2, 1, 1])  # room for the switch's label
    lora = cols[0].checkbox(
        "train a LoRA adapter instead of the full weights",
        value=lora_default,
        key=f"lora_{model.kind}",
        help=UnlearnConfig.model_fields["lora"].description,
    )
    rank = cols[1].number_input(
        "LoRA rank",
        1,
        1024,
        UnlearnConfig.model_fields["lora_rank"].default,
        key="lora_rank",
        help="rank r of the adapter (used when the LoRA box is ticked)",
    )
    submitted = st.form_submit_button("Run", disabled=session["active"] is not None)

if submitted:
    config = UnlearnConfig(
        method=method,
        strength=float(strength),
        steps=int(steps),
        forget_loss=forget_loss,
        retain_rule=retain_rule,
        shared_rule=shared_rule,
        row_rule=row_rule,
        lora=bool(lora),
        lora_rank=int(rank),
    )
    rows: list[dict] = []
    run_request = request
    job = BackgroundJob(
        f"unlearn-{method}",
        lambda progress: get_run(ws, run_request, config, progress=progress, callback=rows.append, quiet=True),
    )
    mode = f"LoRA r={int(rank)}" if lora else "full"
    session["active"] = {
        "job": job,
        "rows": rows,
        "label": f"{METHODS[method].label}, strength {float(strength):g}, {mode}",
    }
    st.rerun()


def curve_figure(rows: list[dict]) -> go.Figure:
    frame = pd.DataFrame(rows)
    fig = go.Figure()
    for column, axis in (("forget_loss", "y"), ("retain_loss", "y"), ("forget_auc", "y2"), ("test_auc", "y2")):
        if column in frame and frame[column].notna().any():
            data = frame[["step", column]].dropna()
            fig.add_trace(
                go.Scatter(
                    x=data["step"],
                    y=data[column],
                    name=column.replace("_", " "),
                    yaxis=axis,
                    mode="lines+markers" if axis == "y2" else "lines",
                )
            )
    for column in [c for c in frame.columns if c.startswith("cos_")]:
        data = frame[["step", column]].dropna()
        if len(data):
            fig.add_trace(
                go.Scatter(
                    x=data["step"], y=data[column], name=f"cos(g_f, g_r) {column[4:]}", yaxis="y3", line={"dash": "dot"}
                )
            )
    fig.update_layout(
        xaxis={"title": "step", "domain": [0, 0.85]},
        yaxis={"title": "loss"},
        yaxis2={"title": "probe AUC", "overlaying": "y", "side": "right"},
        yaxis3={"title": "gradient cosine", "overlaying": "y", "side": "right", "position": 0.95, "range": [-1, 1]},
        height=360,
        margin={"t": 10},
        template="plotly_white",
        legend={"orientation": "h"},
    )
    return fig


active = session["active"]
if active is not None:
    job: BackgroundJob = active["job"]
    if job.finished:  # finished since the check above the form: collect it there
        st.rerun()
    else:
        st.subheader(f"Running: {active['label']}")

        def live() -> None:
            if active["rows"]:
                st.plotly_chart(curve_figure(list(active["rows"])), width="stretch", key="live_curve")
            if st.button("Cancel", key="cancel_run"):
                job.cancel()

        poll_job(
            job,
            lambda j: (
                f"step {j.done_steps} of {j.total_steps or '…'} (Retrain and module groups are computed "
                "first when missing)"
            ),
            every=1,
            body=live,
        )
        st.stop()

if not ws.models.backend.capabilities.has_retrain:
    st.caption(NO_RETRAIN)
if not session["runs"]:
    st.info(
        "No run in this session yet: pick a method and strength above and press Run. Runs are cached; an "
        "identical run is loaded, not recomputed."
    )
    st.stop()


@st.cache_data(show_spinner="Evaluating Original and Retrain ...")
def references(key: str, request_id: str) -> list[dict]:
    """Original and Retrain of the model ``key`` as table rows."""
    return reference_rows(ws, ws.data.request(request_id))


runs = [r for r in session["runs"] if r.request == request.id]
if not runs:
    st.info(f"This session has no run on {request.id} yet.")
    st.stop()
latest = runs[-1]
st.subheader(f"Last run: {latest.label}, strength {latest.strength:g}, {run_mode(latest)}")
history = load_history(latest.run)
if history:
    st.plotly_chart(curve_figure(history), width="stretch", key="final_curve")
for note in latest.group_warnings:
    st.warning(note)
try:
    refs = references(model.key, request.id)
except CureError as err:  # e.g. a user's checkpoint given without a Retrain
    st.info(str(err))
    refs = []
table = comparison_table(runs, refs, model_label=model.label)
st.dataframe(table, width="stretch", hide_index=True)
st.caption(
    "Mode: the full weights, or a LoRA adapter of rank r trained on top; trainable params: what the method "
    "could change (the adapter's under LoRA). JSD and L2 to Retrain on the forget set (lower is closer); MIA: "
    "forget (members) vs holdout users (non-members); PrivLeak near 0 is ideal."
)
st.plotly_chart(pareto_figure(runs, refs, f"This session's runs on {request.id}"), width="stretch", key="pareto")
cols = st.columns(3)
cols[0].download_button(
    "report (JSON)", latest.model_dump_json(indent=2), file_name=f"{latest.run}.json", key="dl_json"
)
cols[1].download_button(
    "comparison (CSV)", table.to_csv(index=False), file_name=f"comparison-{request.id}.csv", key="dl_csv"
)
try:
    archive = checkpoint_archive(latest.run)
except OSError:
    cols[2].caption("No checkpoint was saved for this run.")
else:
    cols[2].download_button("unlearned checkpoint (zip)", archive, file_name=f"{latest.run}.zip", key="dl_ckpt")
