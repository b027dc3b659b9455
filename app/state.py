"""Resources shared by every page and session: the workspace of each model of the picker, its
default models' background job, circuit contexts and cached attributions — each keyed by the
chosen model's key (:attr:`picker.ModelChoice.key`), as ``st.cache_resource`` does not hash
arguments whose names start with ``_``. UI glue only: all computing is in ``cure_core`` and
``analysis``."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st
from picker import ModelChoice, model_picker
from views import model_source_label

from analysis.attribution import Attribution
from cure_core.circuits import AttributionSettings, CircuitContext, circuit_context, get_attribution
from cure_core.environment import read_environment
from cure_core.errors import CureError
from cure_core.jobs import BackgroundJob
from cure_core.requests import ForgetRequest
from cure_core.workspace import Workspace


@st.cache_resource(show_spinner="Loading the dataset ...")
def dataset_workspace() -> Workspace:
    """The data of ``CURE_DATA`` (default MovieLens-100K) with its samples, built once for every
    session, with the default item recipe (the models trained here share its samples)."""
    ws = Workspace.open(data=read_environment().data)
    _ = ws.data.samples
    return ws


@st.cache_resource(show_spinner="Loading the dataset ...")
def workspace(key: str) -> Workspace:
    """The workspace of the picker's choice ``key``: a model trained here with ``CURE_RECIPE``'s
    recipe when it is of its kind (JSON of recipe fields, or ``text``; default: the kind's default
    model), or a checkpoint — ``CURE_MODEL``, ``CURE_ADAPTER``, ``CURE_PROFILE`` ... (``cure app
    --model PATH`` sets them) or one opened in the sidebar. A bad value raises a one-line
    :class:`CureError`."""
    choice = ModelChoice.from_key(key)
    base = dataset_workspace()
    if choice.kind == "checkpoint":
        ws = Workspace.open(data=base.data.source, source=choice.model_source())
        _ = ws.data.samples
        return ws
    recipe = choice.recipe()
    return base if recipe is None else base.with_recipe(recipe)


@st.cache_resource
def default_models_job(_ws: Workspace, key: str) -> BackgroundJob:
    """One shared background run (per model ``key``) that loads or trains Original and Retrain of
    the default request. Its result is ``(original, retrain)``; a user's checkpoint is loaded,
    never trained, and its Retrain is ``None`` when none was given (see :data:`views.NO_RETRAIN`)."""
    request = _ws.data.default_request()
    return BackgroundJob(
        "default-models", lambda progress: _ws.models.reference_models(request, progress=progress, quiet=True)
    )


@st.cache_resource(show_spinner="Loading the model into TransformerLens ...")
def context(_ws: Workspace, key: str, request_id: str) -> CircuitContext:
    """The Original model, its TransformerBridge and the request's sets (needs Original trained)."""
    return circuit_context(_ws, _ws.data.request(request_id))


@st.cache_resource(show_spinner="Attributing (cached on disk after the first time) ...", max_entries=64)
def attribution(_ctx: CircuitContext, key: str, request_id: str, set_name: str, settings_json: str) -> Attribution:
    return get_attribution(_ctx, set_name, AttributionSettings.model_validate_json(settings_json), quiet=True)


def require_models(job: BackgroundJob, ws: Workspace) -> None:
    """Stop the page until the default models are ready, showing their progress and polling
    every 2 s, so the page opens by itself as soon as they are."""
    if job.finished and not job.error:
        return
    if job.error:
        st.error(job.error)
        st.stop()
    trains_here = ws.models.backend.capabilities.trains_here
    what = f"{ws.models.label} is still training" if trains_here else "Your checkpoint is still loading"
    st.info(f"{what} (see the Home page for details). This page opens as soon as it is ready.")
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


def picked_model() -> ModelChoice:
    """The sidebar's model picker; a bad ``CURE_*`` variable stops the page with its one-line error."""
    try:
        return model_picker()
    except CureError as err:
        st.error(str(err))
        st.stop()


def open_model() -> tuple[ModelChoice, Workspace]:
    """The sidebar's model picker and the chosen model's workspace; a bad choice (a missing
    folder, an invalid recipe) stops the page with its one-line error."""
    choice = picked_model()
    try:
        return choice, workspace(choice.key)
    except CureError as err:
        st.error(str(err))
        st.stop()


def analysis_page(title: str) -> tuple[Workspace, ForgetRequest, ModelChoice]:
    """Header of a page that needs the chosen model: title, model picker, workspace and default
    request (a readable error instead of a traceback), then wait for the models."""
    st.set_page_config(page_title=f"{title} · CURE Studio", layout="wide")
    st.title(title)
    choice, ws = open_model()
    try:
        request = ws.data.default_request()
    except CureError as err:
        st.error(str(err))
        st.stop()
    require_models(default_models_job(ws, choice.key), ws)
    st.caption(f"On {model_source_label(ws)}.")
    return ws, request, choice


@st.cache_resource
def retrain_job(_ws: Workspace, key: str, request_id: str) -> BackgroundJob:
    """One shared background run (per model ``key``) training (or loading) the Retrain of a saved request."""
    request = _ws.data.request(request_id)
    return BackgroundJob(
        f"retrain-{request_id}", lambda progress: _ws.models.retrain(request, progress=progress, quiet=True)
    )


def request_picker(ws: Workspace, default: ForgetRequest, key: str) -> ForgetRequest:
    """A sidebar field for a saved request id (default: ``default``); stops the page with a
    readable error for an unknown id or a request made for other data."""

    request_id = st.text_input(
        "forget request id",
        value=default.id,
        key=key,
        help="`cure forget` or the Home page's builder prints the id of a new request",
    )
    try:
        request = ws.data.request(request_id.strip())
        ws.data.sets(request)
    except CureError as err:
        st.error(str(err))
        st.stop()
    return request


def start_gate(ws: Workspace, model: ModelChoice, key: str, what: str) -> None:
    """On a text model (a user's checkpoint, possibly large and on a CPU, or the text model
    trained here, whose prompts are long) a page's costly computation starts when asked, once per
    session and model: until then the page explains ``what`` it will compute with the sidebar's
    settings, offers a button, and stops. The item model starts at once."""
    started = f"{key}:{model.key}"
    if not ws.models.backend.capabilities.costly_scoring or st.session_state.get(started):
        return
    st.info(
        f"{what} Choose the settings in the sidebar, then start; results are cached on disk, and later changes "
        "in this session recompute at once."
    )
    if st.button("Start", key=f"{key}-button", type="primary"):
        st.session_state[started] = True
        st.rerun()
    st.stop()
