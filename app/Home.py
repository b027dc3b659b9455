"""CURE Studio — home page: the dataset, the default model and the default forget request.

UI only: everything it shows comes from ``cure_core``. Run with ``cure app`` (or ``make app``).
"""

from __future__ import annotations

import pandas as pd
import streamlit as st
from state import default_models_job, open_model, poll_job, retrain_job
from views import NO_RETRAIN, model_card, model_source_label, show_model_card, show_prompt

from cure_core.errors import CureError
from cure_core.evaluate import evaluation_cap, evaluation_sets, reference_comparison
from cure_core.jobs import BackgroundJob
from cure_core.model.recommender import Recommender
from cure_core.requests import ForgetRequest, load_request, save_request, user_request
from cure_core.workspace import Workspace

st.set_page_config(page_title="CURE Studio", layout="wide")


@st.cache_data(show_spinner="Evaluating Original and Retrain ...")
def gap_table(
    _ws: Workspace, _original: Recommender, _retrain: Recommender | None, _request: ForgetRequest, key: tuple[str, ...]
) -> pd.DataFrame:
    """Original vs Retrain on the request; cached per ``key``: the request id and both models' weights
    hashes, so a retrained Retrain is not served from an old entry. Without a Retrain (a user's
    checkpoint given without one) the Retrain column says ``unavailable``."""
    reference = reference_comparison(_original, _retrain, _request, _ws.data.samples, _ws.data.sets(_request))
    rows = reference.versus(["test AUC", "forget AUC", "forget LogLoss"])
    if _retrain is None:
        return pd.DataFrame(
            {"Original": [ours for _, ours, _ in rows], "Retrain": ["unavailable"] * len(rows)},
            index=[name for name, _, _ in rows],
        )
    table = pd.DataFrame({name: {"Original": ours, "Retrain": retrain} for name, ours, retrain in rows}).T
    table["Original − Retrain"] = table["Original"] - table["Retrain"]
    return table


def gap_key(original: Recommender, retrain: Recommender | None, request: ForgetRequest) -> tuple[str, ...]:
    other = str(retrain.card.fingerprint) if retrain is not None else "no retrain"
    return (request.id, str(original.card.fingerprint), other)


def show_gap(ws: Workspace, original: Recommender, retrain: Recommender | None, request: ForgetRequest) -> None:
    """The Original-vs-Retrain table. On a text model (a user's checkpoint, possibly large and on
    a CPU, or the text model trained here, whose prompts are long) it is computed when asked for,
    once per session, model and request, not on every visit."""
    asked = f"evaluate-{request.id}:{choice.key}"
    if ws.models.backend.capabilities.costly_scoring and not st.session_state.get(asked):
        cap = evaluation_cap(original)
        n = sum(len(idx) for idx in evaluation_sets(ws.data.sets(request), cap).values())
        models = "the model" if retrain is None else "each model"
        drawn = f"; seeded draws of at most {cap:,} per set, the forget set whole" if cap else ""
        st.caption(f"Scores {n:,} prompts with {models} (test, forget, holdout users, a retain probe{drawn}).")
        if st.button("Evaluate", key=f"evaluate-button-{request.id}"):
            st.session_state[asked] = True
            st.rerun()
        return
    try:
        table = gap_table(ws, original, retrain, request, gap_key(original, retrain, request))
    except CureError as err:
        st.error(str(err))
        return
    st.dataframe(table, width="stretch")
    if retrain is None:
        st.caption(NO_RETRAIN)


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
                    ws.data.dataset, ws.data.samples, user_ids=[u.strip() for u in ids.split(",") if u.strip()]
                )
            else:
                request = user_request(ws.data.dataset, ws.data.samples, fraction=share / 100, seed=int(seed))
            ws.data.sets(request)
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
    st.dataframe(pd.DataFrame({"samples": ws.data.sets(request).sizes()}).T, width="stretch")
    st.caption(
        f"The chosen users' latest ratings, (+) liked, (-) not ({min(len(request.users), 25)} of "
        f"{len(request.users)} users shown):"
    )
    st.dataframe(ws.data.dataset.recent_ratings(request.users[:25]), width="stretch", hide_index=True)
    forget = ws.data.sets(request).forget
    if len(forget):
        show_prompt(
            original, ws.data.samples, int(forget[0]), ws.data.titles, "The first forget prompt as the model reads it"
        )
    retrain = ws.models.load_model("retrain", request)
    if not ws.models.backend.capabilities.trains_here:
        st.markdown("**Original vs Retrain on this request**")
        show_gap(ws, original, retrain, request)
        return
    if retrain is None:
        if not st.session_state.get(f"train-{request.id}:{choice.key}"):
            st.info("Retrain for this request is not trained yet (a few minutes on 2 cores; cached afterwards).")
            if st.button("Train Retrain now", key="train_retrain"):
                st.session_state[f"train-{request.id}:{choice.key}"] = True
                st.rerun()
            return
        job = retrain_job(ws, choice.key, request.id)
        if not job.finished:
            poll_job(job, lambda j: f"training Retrain: {j.fraction:.0%}")
            return
        if job.error:
            st.error(job.error)
            return
        retrain = job.result
    st.markdown("**Original vs Retrain on this request**")
    show_gap(ws, original, retrain, request)


st.title("CURE Studio")
choice, ws = open_model()
try:
    summary = ws.data.summary()
    request = ws.data.default_request()
    sets = ws.data.sets(request)
except CureError as err:
    st.error(str(err))
    st.stop()
capabilities = ws.models.backend.capabilities
reference = "the Retrain reference" if capabilities.has_retrain else "no Retrain given"
st.caption(
    f"Circuit-aware unlearning for LLM-based recommenders — {ws.data.dataset.name}, {model_source_label(ws)}, and "
    f"{reference}."
)

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

st.subheader("Models" if capabilities.trains_here else "Model")
job = default_models_job(ws, choice.key)


def training_text(job: BackgroundJob) -> str:
    """Progress of the training job: the item model reports epochs, the text model steps."""
    info = job.info
    parts = [f"epoch {info['epoch']}"] if "epoch" in info else []
    parts += [f"loss {info['loss']:.4f}"] if "loss" in info else []
    return f"{job.fraction:.0%} — {', '.join(parts) or 'starting'}"


def training_table(original: Recommender, retrain: Recommender) -> None:
    """The training facts of a model trained here and of its Retrain, one row each."""
    rows = []
    for name, rec in (("Original", original), ("Retrain", retrain)):
        card = rec.card
        metrics = card.metrics.model_dump(exclude_none=True) if card.metrics is not None else {}
        rows.append(
            {
                "model": name,
                "parameters": card.n_params,
                "train samples": card.train_samples,
                "best epoch": card.best_epoch,
                "train seconds": card.train_seconds,
                **{k: round(v, 4) for k, v in metrics.items()},
            }
        )
    st.dataframe(pd.DataFrame(rows).set_index("model"), width="stretch")


def trained_models(original: Recommender, retrain: Recommender) -> None:
    """A model trained here and its Retrain: training facts, the gap, the model card and a
    prompt as the model reads it."""
    training_table(original, retrain)
    gap_heading()
    show_gap(ws, original, retrain, request)
    card = original.card
    recipe, metrics = card.recipe, card.metrics
    if recipe is None or metrics is None:
        raise ValueError("a model trained here has its recipe and metrics on its card")
    with st.expander("Model card"):
        st.markdown(
            f"**{ws.models.label}**: {recipe.arch}, {recipe.n_layer} layers, {recipe.n_head} heads, d_model "
            f"{recipe.d_model}, d_mlp {recipe.d_mlp}; {card.n_params:,} parameters; the user is written as "
            f"unknown for {recipe.user_dropout:.0%} of training prompts. Test AUC **{metrics.test_auc:.4f}**, best "
            f"epoch {card.best_epoch} chosen on validation AUC, trained in {card.train_seconds:.0f} s on "
            f"{card.threads} thread(s)."
        )
        if card.checkpoint is not None:  # a Hugging Face folder: what loading it tells
            st.dataframe(model_card(ws.models.backend.source, original, RETRAINED_HERE), width="stretch")
        st.json(recipe.model_dump(), expanded=False)
    if len(sets.forget):
        show_prompt(
            original, ws.data.samples, int(sets.forget[0]), ws.data.titles, "The default request's first forget prompt"
        )


RETRAINED_HERE = "trained here on the retain set of each request"


def given_models(original: Recommender, retrain: Recommender | None) -> None:
    """A user's checkpoint: what was loaded, the gap (Retrain unavailable without one), a prompt."""
    st.markdown("**Model card** — what was loaded")
    show_model_card(ws.models.backend.source, original)
    gap_heading()
    show_gap(ws, original, retrain, request)
    if len(sets.forget):
        show_prompt(
            original, ws.data.samples, int(sets.forget[0]), ws.data.titles, "The default request's first forget prompt"
        )


def gap_heading() -> None:
    st.subheader("Memorization gap on the default request")
    st.caption(
        "Unlearning only means something if Original is measurably better on the forget set than Retrain, "
        "which never saw it. Membership inference: forget samples (members) vs holdout users' samples "
        "(non-members); 0.5 = no signal."
    )


if not job.finished:
    if capabilities.trains_here:
        st.info(
            f"Training the {ws.models.label.lower()} and its Retrain reference side by side (first use only; cached "
            "afterwards). The page stays usable."
        )
        poll_job(job, training_text)
    else:
        st.info(f"Loading {model_source_label(ws)} (nothing is trained for a user's checkpoint).")
        poll_job(job, lambda j: "loading the checkpoint")
elif job.error:
    st.error(job.error)
else:
    original, retrain = job.result
    if capabilities.trains_here:
        trained_models(original, retrain)
    else:
        given_models(original, retrain)
    request_builder(ws, original)
