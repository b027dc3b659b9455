"""CURE Studio — home page: the dataset, the default model and the default forget request.

UI only: everything it shows comes from ``cure_core``. Run with ``cure app`` (or ``make app``).
"""

from __future__ import annotations

import pandas as pd
import streamlit as st
from state import default_models_job, poll_job, retrain_job, workspace

from cure_core.errors import CureError
from cure_core.evaluate import reference_comparison
from cure_core.jobs import BackgroundJob
from cure_core.model.recommender import Recommender
from cure_core.requests import ForgetRequest, load_request, save_request, user_request
from cure_core.workspace import Workspace

st.set_page_config(page_title="CURE Studio", layout="wide")


@st.cache_data(show_spinner="Evaluating Original and Retrain ...")
def gap_table(
    _ws: Workspace, _original: Recommender, _retrain: Recommender, _request: ForgetRequest, key: tuple[str, ...]
) -> pd.DataFrame:
    """Original vs Retrain on the request; cached per ``key``: the request id and both models' weights
    hashes, so a retrained Retrain is not served from an old entry."""
    reference = reference_comparison(_original, _retrain, _request, _ws.samples, _ws.sets(_request))
    rows = reference.versus(["test AUC", "forget AUC", "forget LogLoss"])
    table = pd.DataFrame({name: {"Original": ours, "Retrain": retrain} for name, ours, retrain in rows}).T
    table["Original − Retrain"] = table["Original"] - table["Retrain"]
    return table


def gap_key(original: Recommender, retrain: Recommender, request: ForgetRequest) -> tuple[str, ...]:
    return (request.id, str(original.meta.get("weights_sha256")), str(retrain.meta.get("weights_sha256")))


def request_builder(ws: Workspace, original: Recommender) -> None:
    """Build a user-level forget request, show the chosen users' histories, and its Retrain gap."""
    st.subheader("Build a forget request")
    with st.form("request_builder"):
        how = st.radio("forget", ["a share of users", "user ids"], horizontal=True, key="builder_how")
        share = st.slider("share of users (%)", 1, 20, 5, key="builder_share")
        seed = st.number_input("seed", 0, 100_000, 0, key="builder_seed")
        ids = st.text_input("user ids, comma-separated (when forgetting user ids)", key="builder_ids")
        submitted = st.form_submit_button("Create request")
    if submitted:
        try:
            if how == "user ids":
                request = user_request(
                    ws.dataset, ws.samples, user_ids=[u.strip() for u in ids.split(",") if u.strip()]
                )
            else:
                request = user_request(ws.dataset, ws.samples, fraction=share / 100, seed=int(seed))
            ws.sets(request)
            save_request(request)
            st.session_state["built_request"] = request.id
        except CureError as err:
            st.error(str(err))
            return
    built = st.session_state.get("built_request")
    if not built:
        return
    request = load_request(built)
    st.markdown(
        f"**{request.id}** — {request.description}. Use this id on the other pages and in `cure unlearn "
        f"--request {request.id}`."
    )
    st.dataframe(pd.DataFrame({"samples": ws.sets(request).sizes()}).T, width="stretch")
    st.caption(
        f"The chosen users' latest ratings, (+) liked, (-) not ({min(len(request.users), 25)} of "
        f"{len(request.users)} users shown):"
    )
    st.dataframe(ws.dataset.recent_ratings(request.users[:25]), width="stretch", hide_index=True)
    retrain = ws.load_model("retrain", request)
    if retrain is None:
        if not st.session_state.get(f"train-{request.id}"):
            st.info("Retrain for this request is not trained yet (a few minutes on 2 cores; cached afterwards).")
            if st.button("Train Retrain now", key="train_retrain"):
                st.session_state[f"train-{request.id}"] = True
                st.rerun()
            return
        job = retrain_job(ws, request.id)
        if not job.finished:
            poll_job(job, lambda j: f"training Retrain: {j.fraction:.0%}")
            return
        if job.error:
            st.error(job.error)
            return
        retrain = job.result
    st.markdown("**Original vs Retrain on this request**")
    st.dataframe(gap_table(ws, original, retrain, request, gap_key(original, retrain, request)), width="stretch")


st.title("CURE Studio")
st.caption(
    "Circuit-aware unlearning for LLM-based recommenders — MovieLens-100K, a GPT-2 recommender trained "
    "here, and the Retrain reference."
)

try:
    ws = workspace()
    summary = ws.summary()
    request = ws.default_request()
    sets = ws.sets(request)
except CureError as err:
    st.error(str(err))
    st.stop()

left, right = st.columns(2)
with left:
    st.subheader("Dataset")
    st.dataframe(
        pd.DataFrame({"value": [str(v) for v in summary.values()]}, index=list(summary.keys())), width="stretch"
    )
with right:
    st.subheader("Default forget request")
    st.markdown(f"**{request.id}** — {request.kind}-level, {request.description}")
    st.dataframe(pd.DataFrame({"samples": sets.sizes()}), width="stretch")

st.subheader("Models")
job = default_models_job(ws)


def training_text(job: BackgroundJob) -> str:
    info = job.info
    detail = f"epoch {info['epoch']}, loss {info['loss']:.4f}" if "loss" in info else "starting"
    return f"{job.fraction:.0%} — {detail}"


if not job.finished:
    st.info(
        "Training the default model and its Retrain reference side by side (first launch only; cached "
        "afterwards). The page stays usable."
    )
    poll_job(job, training_text)
elif job.error:
    st.error(job.error)
else:
    original, retrain = job.result
    rows = []
    for name, rec in (("Original", original), ("Retrain", retrain)):
        meta = rec.meta
        rows.append(
            {
                "model": name,
                "parameters": meta["n_params"],
                "train samples": meta["train_samples"],
                "best epoch": meta["best_epoch"],
                "train seconds": meta["train_seconds"],
                **{k: round(v, 4) for k, v in meta["metrics"].items()},
            }
        )
    st.dataframe(pd.DataFrame(rows).set_index("model"), width="stretch")
    st.subheader("Memorization gap on the default request")
    st.caption(
        "Unlearning only means something if Original is measurably better on the forget set than Retrain, "
        "which never saw it. Membership inference: forget samples (members) vs holdout users' samples "
        "(non-members); 0.5 = no signal."
    )
    st.dataframe(gap_table(ws, original, retrain, request, gap_key(original, retrain, request)), width="stretch")
    recipe = original.meta["recipe"]
    with st.expander("Model card"):
        st.markdown(
            f"**{recipe['arch']}**, {recipe['n_layer']} layers, {recipe['n_head']} heads, d_model "
            f"{recipe['d_model']}, d_mlp {recipe['d_mlp']}; "
            f"{original.meta['n_params']:,} parameters; item-mode vocabulary with a user token (dropped to "
            f"`<unk_user>` for {recipe['user_dropout']:.0%} of training prompts). "
            f"Test AUC **{original.meta['metrics']['test_auc']:.4f}**, best epoch "
            f"{original.meta['best_epoch']} chosen on validation AUC, trained in "
            f"{original.meta['train_seconds']:.0f} s on {original.meta['threads']} thread(s)."
        )
        st.json(recipe, expanded=False)
    request_builder(ws, original)
