"""CURE Studio — home page: the dataset, the default model and the default forget request.

UI only: everything it shows comes from ``cure_core``. Run with ``cure app`` (or ``make app``).
"""

from __future__ import annotations

import pandas as pd
import streamlit as st
from state import default_models_job, workspace

from cure_core.errors import CureError
from cure_core.evaluate import compare_to_retrain
from cure_core.model.recommender import Recommender
from cure_core.requests import ForgetRequest
from cure_core.workspace import Workspace

st.set_page_config(page_title="CURE Studio", layout="wide")


@st.cache_data(show_spinner="Evaluating Original and Retrain ...")
def gap_table(_ws: Workspace, _original: Recommender, _retrain: Recommender, _request: ForgetRequest, request_id: str) -> pd.DataFrame:
    """Original vs Retrain on the request; cached per request id (the models are the job's)."""
    report = compare_to_retrain(_original, _retrain, _request, _ws.samples, _ws.sets(_request), name="Original")
    rows = {
        "test AUC": ("test", "auc"), "forget AUC": ("forget", "auc"), "forget LogLoss": ("forget", "logloss"),
        **{f"MIA AUC ({attack})": ("mia", attack) for attack in report["model"]["mia"]},
    }  # fmt: skip
    table = pd.DataFrame({name: {"Original": report["model"][a][b], "Retrain": report["retrain"][a][b]} for name, (a, b) in rows.items()}).T
    table["Original − Retrain"] = table["Original"] - table["Retrain"]
    return table


st.title("CURE Studio")
st.caption("Circuit-aware unlearning for LLM-based recommenders — MovieLens-100K, a GPT-2 recommender trained here, and the Retrain reference.")

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
    st.dataframe(pd.DataFrame({"value": [str(v) for v in summary.values()]}, index=list(summary.keys())), width="stretch")
with right:
    st.subheader("Default forget request")
    st.markdown(f"**{request.id}** — {request.kind}-level, {request.description}")
    st.dataframe(pd.DataFrame({"samples": sets.sizes()}), width="stretch")

st.subheader("Models")
job = default_models_job(ws)


@st.fragment(run_every=2)
def training_progress() -> None:
    """Polls the shared training job; a full rerun shows the models once it has finished."""
    if job.finished:
        st.rerun()
    info = job.info
    detail = f"epoch {info['epoch']}, loss {info['loss']:.4f}" if "loss" in info else "starting"
    st.progress(job.fraction, text=f"{job.fraction:.0%} — {detail}")


if not job.finished:
    st.info("Training the default model and its Retrain reference side by side (first launch only; cached afterwards). The page stays usable.")
    training_progress()
elif job.error:
    st.error(job.error)
else:
    original, retrain = job.result
    rows = []
    for name, rec in (("Original", original), ("Retrain", retrain)):
        meta = rec.meta
        rows.append({"model": name, "parameters": meta["n_params"], "train samples": meta["train_samples"], "best epoch": meta["best_epoch"], "train seconds": meta["train_seconds"], **{k: round(v, 4) for k, v in meta["metrics"].items()}})
    st.dataframe(pd.DataFrame(rows).set_index("model"), width="stretch")
    st.subheader("Memorization gap on the default request")
    st.caption("Unlearning only means something if Original is measurably better on the forget set than Retrain, which never saw it. Membership inference: forget samples (members) vs holdout users' samples (non-members); 0.5 = no signal.")
    st.dataframe(gap_table(ws, original, retrain, request, request.id), width="stretch")
    recipe = original.meta["recipe"]
    st.caption(f"{recipe['arch']}: {recipe['n_layer']} layers, {recipe['n_head']} heads, d_model {recipe['d_model']}, item-mode vocabulary with a user token.")
