"""Resources shared by every page and session: the workspace, the default models' background
job, the circuit context and cached attributions. UI glue only: all computing is in
``cure_core`` and ``analysis``."""

from __future__ import annotations

import os
from collections.abc import Callable

import streamlit as st
from views import model_source_label

from analysis.attribution import Attribution
from cure_core.circuits import AttributionSettings, CircuitContext, circuit_context, get_attribution
from cure_core.errors import CureError
from cure_core.jobs import BackgroundJob
from cure_core.model.recipe import recipe_from_json
from cure_core.model_source import ModelSource
from cure_core.requests import ForgetRequest
from cure_core.workspace import Workspace


@st.cache_resource(show_spinner="Loading the dataset ...")
def workspace() -> Workspace:
    """The data of ``CURE_DATA`` (default MovieLens-100K), the recipe of ``CURE_RECIPE`` (JSON of
    recipe fields, e.g. a tiny model for a quick demo; default: the default model) and the model
    of ``CURE_MODEL``, ``CURE_ADAPTER``, ``CURE_PROFILE`` ... (``cure app --model PATH`` sets them;
    default: the item model trained here). A bad value raises a one-line :class:`CureError`."""
    ws = Workspace(
        data=os.environ.get("CURE_DATA") or None,
        recipe=recipe_from_json(os.environ.get("CURE_RECIPE")),
        source=ModelSource.from_environment(),
    )
    _ = ws.samples  # build the samples now, once, for every session
    return ws


@st.cache_resource
def default_models_job(_ws: Workspace) -> BackgroundJob:
    """One shared background run that loads or trains Original and Retrain of the default request.
    Its result is ``(original, retrain)``; a user's checkpoint is loaded, never trained, and its
    Retrain is ``None`` when none was given (see :data:`views.NO_RETRAIN`)."""
    request = _ws.default_request()
    return BackgroundJob(
        "default-models", lambda progress: _ws.reference_models(request, progress=progress, quiet=True)
    )


@st.cache_resource(show_spinner="Loading the model into TransformerLens ...")
def context(_ws: Workspace, request_id: str) -> CircuitContext:
    """The Original model, its TransformerBridge and the request's sets (needs Original trained)."""
    from cure_core.requests import load_request

    return circuit_context(_ws, load_request(request_id))


@st.cache_resource(show_spinner="Attributing (cached on disk after the first time) ...", max_entries=64)
def attribution(_ctx: CircuitContext, request_id: str, set_name: str, settings_json: str) -> Attribution:
    return get_attribution(_ctx, set_name, AttributionSettings.model_validate_json(settings_json), quiet=True)


def require_models(job: BackgroundJob, user_model: bool = False) -> None:
    """Stop the page until the default models are ready, showing their progress and polling
    every 2 s, so the page opens by itself as soon as they are."""
    if job.finished and not job.error:
        return
    if job.error:
        st.error(job.error)
        st.stop()
    st.info(
        ("Your checkpoint is still loading" if user_model else "The default model is still training")
        + " (see the Home page for details). This page opens as soon as it is ready."
    )
    poll_job(job, lambda j: f"{j.fraction:.0%}")
    st.stop()


def poll_job(
    job: BackgroundJob, text: Callable[[BackgroundJob], str], every: float = 2.0, body: Callable[[], None] | None = None
) -> None:
    """The one way a page follows a background job: a fragment that redraws only itself every
    ``every`` seconds (a progress bar labelled ``text(job)``, then ``body()``, e.g. a live chart)
    and reruns the whole page once the job has finished, so the page shows its result."""

    @st.fragment(run_every=every)
    def poll() -> None:
        if job.finished:
            st.rerun()
        st.progress(job.fraction, text=text(job))
        if body is not None:
            body()

    poll()


def analysis_page(title: str, user_model_notice: str | None = None) -> tuple[Workspace, ForgetRequest]:
    """Header of a page that needs the default model: title, workspace and default request
    (a readable error instead of a traceback), then wait for the models. On a user's checkpoint
    a page that does not work there yet gives ``user_model_notice``, and stops."""
    st.set_page_config(page_title=f"{title} · CURE Studio", layout="wide")
    st.title(title)
    try:
        ws = workspace()
        request = ws.default_request()
    except CureError as err:
        st.error(str(err))
        st.stop()
    if ws.user_model and user_model_notice:
        st.info(user_model_notice)
        st.stop()
    require_models(default_models_job(ws), ws.user_model)
    if ws.user_model:
        st.caption(f"On {model_source_label(ws)}.")
    return ws, request


@st.cache_resource
def retrain_job(_ws: Workspace, request_id: str) -> BackgroundJob:
    """One shared background run training (or loading) the Retrain of a saved request."""
    from cure_core.requests import load_request

    request = load_request(request_id)
    return BackgroundJob(f"retrain-{request_id}", lambda progress: _ws.retrain(request, progress=progress, quiet=True))


def request_picker(ws: Workspace, default: ForgetRequest, key: str) -> ForgetRequest:
    """A sidebar field for a saved request id (default: ``default``); stops the page with a
    readable error for an unknown id or a request made for other data."""
    from cure_core.requests import load_request

    request_id = st.text_input(
        "forget request id",
        value=default.id,
        key=key,
        help="`cure forget` or the Home page's builder prints the id of a new request",
    )
    try:
        request = load_request(request_id.strip())
        ws.sets(request)
    except CureError as err:
        st.error(str(err))
        st.stop()
    return request


def start_gate(ws: Workspace, key: str, what: str) -> None:
    """On a user's checkpoint (possibly large, possibly on a CPU) a page's costly computation
    starts when asked, once per session: until then the page explains ``what`` it will compute
    with the sidebar's settings, offers a button, and stops. The item model starts at once."""
    if not ws.user_model or st.session_state.get(key):
        return
    st.info(
        f"{what} Choose the settings in the sidebar, then start; results are cached on disk, and later changes "
        "in this session recompute at once."
    )
    if st.button("Start", key=f"{key}-button", type="primary"):
        st.session_state[key] = True
        st.rerun()
    st.stop()
