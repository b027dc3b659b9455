"""The ``CURE_*`` environment variables: one definition, read by the CLI and the app alike.

Each variable stands for a command-line option (a flag given on the command line wins) or a
setting of the app's server. :func:`read_environment` checks every variable that is set, so a
bad value is refused in one line naming the variable, before any work: at the start of every
``cure`` command and of the app.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cure_core.errors import CureError
from cure_core.model.recipe import Recipe, TextRecipe, recipe_from_json
from cure_core.model_source import ENVIRONMENT, ModelSource

DATA, RECIPE, HOST, MODEL_ROOTS, CACHE = "CURE_DATA", "CURE_RECIPE", "CURE_HOST", "CURE_MODEL_ROOTS", "CURE_CACHE"
LOOPBACK = "127.0.0.1"

VARIABLES: dict[str, str] = {
    CACHE: "the cache folder (default: cache/ in the repository)",
    DATA: "--data: a GroupLens ml-100k folder/zip or RecBole atomic files",
    RECIPE: "--recipe/--recipe-json: `item`, `text`, or a JSON object of recipe fields",
    **{var: f"--{field.replace('_', '-')}" for field, var in ENVIRONMENT.items()},
    HOST: f"cure app --host: the address the app listens on (default {LOOPBACK}, this machine only)",
    MODEL_ROOTS: f"folders (separated by {os.pathsep!r}) under which the app's checkpoint opener may read",
}
"""Every variable the project reads, with what it stands for (``docs/cli.md`` lists them too)."""


@dataclass(frozen=True)
class Environment:
    """The checked values of the ``CURE_*`` variables (``None``/empty: not set)."""

    data: str | None
    recipe: Recipe | TextRecipe | None
    recipe_text: str | None
    source_values: dict[str, str]
    host: str | None
    model_roots: tuple[Path, ...]

    @property
    def source(self) -> ModelSource:
        """The model the variables name alone (the app's; a command adds its flags: :meth:`model_source`)."""
        return self.model_source({}, {})

    def model_source(self, flags: Mapping[str, object], flag_names: Mapping[str, str]) -> ModelSource:
        """The variables' model with the command line's ``flags`` (field -> value) on top."""
        from cure_core.settings import validated

        names = {field: flag_names.get(field, var) for field, var in ENVIRONMENT.items()}
        names |= {
            field: var for field, var in ENVIRONMENT.items() if field in self.source_values and field not in flags
        }
        return validated(
            ModelSource, {**self.source_values, **flags}, "model settings", "fix the option or variable named", names
        )


def read_environment(environ: Mapping[str, str] | None = None) -> Environment:
    """Every ``CURE_*`` variable that is set, checked; a bad one raises a one-line :class:`CureError`."""
    env = os.environ if environ is None else environ
    value = {name: (env.get(name) or "").strip() or None for name in VARIABLES}
    data = value[DATA]
    if data is not None and not Path(data).expanduser().exists():
        raise CureError(f"{DATA}={data} does not exist", f"set {DATA} to a MovieLens folder or zip, or unset it")
    recipe = None
    if value[RECIPE] is not None:
        try:
            recipe = recipe_from_json(value[RECIPE])
        except CureError as err:
            raise CureError(f"{RECIPE}: {err.problem}", f"{err.fix}; or unset {RECIPE}") from None
    found = Environment(
        data=data,
        recipe=recipe,
        recipe_text=value[RECIPE],
        source_values={field: value[var] for field, var in ENVIRONMENT.items() if value[var] is not None},
        host=_host(value[HOST]) if value[HOST] is not None else None,
        model_roots=_folders(value[MODEL_ROOTS], MODEL_ROOTS),
    )
    if "model" in found.source_values or not found.source_values:
        _ = found.source  # checked whole now; without CURE_MODEL a command's --model completes it
    return found


def _host(text: str, where: str = HOST) -> str:
    """An IP address to listen on (a name such as ``localhost`` would hide which interface)."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise CureError(
            f"{where} {text!r} is not an IP address",
            f"give the address to listen on, e.g. {LOOPBACK} (this machine only) or 0.0.0.0 (every interface)",
        ) from None


def checked_host(text: str) -> str:
    """``cure app --host``'s value, checked like ``CURE_HOST``."""
    return _host(text.strip(), "--host")


def is_loopback(host: str) -> bool:
    return ipaddress.ip_address(host).is_loopback


def _folders(text: str | None, variable: str) -> tuple[Path, ...]:
    if text is None:
        return ()
    folders = tuple(Path(part).expanduser().resolve() for part in text.split(os.pathsep) if part.strip())
    missing = [str(f) for f in folders if not f.is_dir()]
    if missing:
        raise CureError(f"{variable} names {missing[0]}, which is not a folder", f"list existing folders in {variable}")
    return folders


def allowed_model_roots(env: Environment) -> tuple[Path, ...]:
    """The folders under which the app's checkpoint opener may read: ``CURE_MODEL_ROOTS``, the
    checkpoint folders given at start (``CURE_MODEL``, ``CURE_ADAPTER`` ...) and the cache."""
    from cure_core.cache import cache_root

    given = tuple(Path(v).expanduser().resolve() for f, v in env.source_values.items() if f in FOLDER_FIELDS)
    return (*env.model_roots, *given, cache_root().resolve())


FOLDER_FIELDS = ("model", "adapter", "retrain_model", "retrain_adapter")


def check_allowed(folder: str, roots: tuple[Path, ...], what: str) -> None:
    """Refuse ``folder`` unless it lies under one of ``roots``, saying nothing of what exists outside them."""
    path = Path(folder).expanduser().resolve()
    if not any(path == root or path.is_relative_to(root) for root in roots):
        raise CureError(
            f"the {what} {folder} is outside the folders this app may open",
            f"start the app with {MODEL_ROOTS}=<a folder above it> (or `cure app --model <folder>`)",
        )
