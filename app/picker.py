"""The model picker: which model every page works on — the item model trained here, the text
model trained here (``--recipe text``), or a user's checkpoint (``CURE_MODEL``, or a folder
entered in the sidebar).

The choice is one per browser session, kept in ``st.session_state`` so that it follows the user
from page to page; its JSON (:attr:`ModelChoice.key`) keys every cached resource of that model.
UI glue only: what a choice means is ``cure_core``'s (recipes, :class:`ModelSource`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import streamlit as st
from pydantic import BaseModel, ConfigDict

from cure_core.environment import FOLDER_FIELDS, allowed_model_roots, check_allowed, read_environment
from cure_core.errors import CureError
from cure_core.model.backends import TRAINED_HERE
from cure_core.model.recipe import Recipe, TextRecipe
from cure_core.model_source import ENVIRONMENT, ModelSource
from cure_core.profiles import SHIPPED_PROFILES
from cure_core.settings import validated

Kind = Literal["item", "text", "checkpoint"]
CHOICE = "model_choice"  # session key: the chosen model's key (not a widget's, so it survives page changes)
PICKER = "model_picker"  # the sidebar radio's widget key
OPENED = "opened_checkpoints"  # session key: keys of the checkpoints opened in the sidebar
OPEN_ERROR = "open_checkpoint_error"  # session key: the one-line error of the last failed opening
LABELS = TRAINED_HERE
CHECKPOINT_NAMES = {"model": "model folder", "adapter": "adapter folder", "profile": "profile"}
FROM_ENVIRONMENT = ("dtype", "device")  # fields an opened checkpoint takes from CURE_DTYPE / CURE_DEVICE


class ModelChoice(BaseModel):
    """One option of the picker; its JSON is the key of every cached resource of its model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Kind = "item"
    source: dict[str, str] | None = None
    """An opened checkpoint's :class:`ModelSource` fields; ``None``: the environment's (``CURE_MODEL`` ...)."""

    @property
    def key(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_key(cls, key: str) -> ModelChoice:
        return cls.model_validate_json(key)

    @property
    def label(self) -> str:
        """What the picker shows: the kind, and a checkpoint's :meth:`ModelSource.label`."""
        if self.kind != "checkpoint":
            return LABELS[self.kind]
        try:
            name = self.model_source().label()
        except CureError:  # a bad CURE_MODEL: said on the page once chosen
            name = Path(os.environ.get(ENVIRONMENT["model"]) or "?").name
        return f"Your checkpoint: {name}"

    def model_source(self) -> ModelSource:
        """The checkpoint to load (a one-line :class:`CureError` for a bad one); none for models trained here."""
        if self.kind != "checkpoint":
            return ModelSource()
        if self.source is None:
            return read_environment().source
        return validated(ModelSource, self.source, "checkpoint", "enter an existing folder", names=CHECKPOINT_NAMES)

    def recipe(self) -> Recipe | TextRecipe | None:
        """The recipe of a model trained here: ``CURE_RECIPE``'s when it is of this kind, else the
        kind's default (``None``: the default item recipe); ``None`` for a checkpoint."""
        if self.kind == "checkpoint":
            return None
        recipe = read_environment().recipe
        if environment_recipe_kind() == self.kind:
            return recipe
        return TextRecipe() if self.kind == "text" else None


def environment_recipe_kind() -> Literal["item", "text"]:
    """Which model ``CURE_RECIPE`` sets up: ``text`` for a text recipe, else ``item``."""
    recipe = read_environment().recipe
    return "item" if recipe is None else recipe.name  # type: ignore[return-value]


def default_choice() -> ModelChoice:
    """What the environment asks for: ``CURE_MODEL``'s checkpoint, else ``CURE_RECIPE``'s kind."""
    if os.environ.get(ENVIRONMENT["model"]):
        return ModelChoice(kind="checkpoint")
    return ModelChoice(kind=environment_recipe_kind())


def option_keys() -> list[str]:
    """The picker's options: both models trained here, ``CURE_MODEL``'s checkpoint when given,
    and the checkpoints opened in this browser session."""
    keys = [ModelChoice(kind="item").key, ModelChoice(kind="text").key]
    if os.environ.get(ENVIRONMENT["model"]):
        keys.append(ModelChoice(kind="checkpoint").key)
    return keys + [k for k in st.session_state.get(OPENED, []) if k not in keys]


def model_picker() -> ModelChoice:
    """The sidebar's model radio and checkpoint opener; returns this browser session's choice."""
    keys = option_keys()
    chosen = st.session_state.get(PICKER)  # the radio's value: what was clicked, or set by the opener
    if chosen not in keys:
        chosen = st.session_state.get(CHOICE)
    if chosen not in keys:
        chosen = default_choice().key
    # set anew on every run: a widget on another page starts afresh, so this carries the choice over
    st.session_state[PICKER] = chosen
    with st.sidebar:
        key = st.radio(
            "model",
            keys,
            format_func=lambda k: ModelChoice.from_key(k).label,
            key=PICKER,
            help="what every page works on; the choice follows you across pages",
        )
        checkpoint_opener()
    st.session_state[CHOICE] = key
    return ModelChoice.from_key(key)


def checkpoint_opener() -> None:
    """A form for a checkpoint folder (+ adapter, profile); a bad one is a one-line error."""
    error = st.session_state.pop(OPEN_ERROR, None)
    with st.expander("Open a checkpoint folder", expanded=error is not None):
        with st.form("open_checkpoint", border=False):
            st.text_input("model folder", key="checkpoint_path", placeholder="/path/to/hf-model")
            st.text_input("LoRA adapter folder (optional)", key="checkpoint_adapter")
            st.selectbox("prompt profile", SHIPPED_PROFILES, key="checkpoint_profile")
            st.form_submit_button("Open", key="checkpoint_open", on_click=open_checkpoint)
        if error is not None:
            st.error(error)


def open_checkpoint() -> None:
    """The opener's callback (before the page reruns): check the folders through
    :class:`ModelSource`, then add the checkpoint to the options and choose it."""
    path = (st.session_state.get("checkpoint_path") or "").strip()
    adapter = (st.session_state.get("checkpoint_adapter") or "").strip()
    if not path:
        st.session_state[OPEN_ERROR] = str(
            CureError("no model folder given", "enter the folder of a Hugging Face model (config.json, weights)")
        )
        return
    fields = {"model": path, "profile": st.session_state.get("checkpoint_profile") or SHIPPED_PROFILES[0]}
    if adapter:
        fields["adapter"] = adapter
    try:
        env = read_environment()
        for field, folder in fields.items():
            if field in FOLDER_FIELDS:
                check_allowed(folder, allowed_model_roots(env), CHECKPOINT_NAMES[field])
        environment = {f: v for f, v in env.source_values.items() if f in FROM_ENVIRONMENT}
        choice = ModelChoice(kind="checkpoint", source={**environment, **fields})
        choice.model_source()
    except CureError as err:
        st.session_state[OPEN_ERROR] = str(err)
        return
    opened = st.session_state.setdefault(OPENED, [])
    if choice.key not in opened:
        opened.append(choice.key)
    st.session_state[CHOICE] = st.session_state[PICKER] = choice.key
