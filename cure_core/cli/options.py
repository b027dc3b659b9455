"""argparse options built from pydantic settings, values checked where they are parsed, and the
one check of output paths. Nothing here loads data, so a bad argument fails in milliseconds.

A settings field becomes one option: a ``Literal`` field gets ``choices``, a constrained field
(``Field(ge=...)``) a type function that validates the value with the field's own constraints,
the field's description becomes the help, a tuple field listed in ``lists`` takes several
values (``--lora-targets q_proj v_proj``). :class:`SettingsOptions` remembers which flag stands
for which field, so a validation error names ``--prompts``, not ``n_prompts``.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Generic, Literal, NoReturn, TypeVar, get_origin

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from cure_core.errors import CureError
from cure_core.settings import choices, describe, field_adapter, option_flag, validated

M = TypeVar("M", bound=BaseModel)


class CliParser(argparse.ArgumentParser):
    """A parser whose usage errors are one :class:`CureError` line instead of usage text."""

    def error(self, message: str) -> NoReturn:
        raise CureError(message, f"see `{self.prog} --help`")


def checked(adapter: TypeAdapter) -> Callable[[str], Any]:
    """An argparse type function validating one value with ``adapter`` (constraints included)."""

    def parse(raw: str) -> Any:
        try:
            return adapter.validate_python(raw)
        except ValidationError as err:
            raise argparse.ArgumentTypeError(describe(err)) from None

    return parse


def bounded(kind: type, **constraints: float) -> Callable[[str], Any]:
    """A type function for a number with ``Field`` constraints, e.g. ``bounded(int, ge=1)``."""
    return checked(TypeAdapter(Annotated[kind, Field(**constraints)]))


def number_list(adapter: TypeAdapter) -> Callable[[str], list[Any]]:
    """A comma-separated list of values, each checked by ``adapter``; empty lists are refused."""
    one = checked(adapter)

    def parse(raw: str) -> list[Any]:
        values = [one(part.strip()) for part in raw.split(",") if part.strip()]
        if not values:
            raise argparse.ArgumentTypeError(f"{raw!r} holds no value")
        return values

    return parse


MEMORY_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
MEMORY_UNITS.update({"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40})


def memory_size(raw: str) -> int:
    """A number of bytes: ``8000000000``, ``8GB`` (powers of 1000) or ``8GiB``, ``1.5GiB`` (of 1024)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*", raw)
    unit = match[2].lower() if match else ""
    if match is None or unit not in MEMORY_UNITS:
        raise CureError(
            f"--max-memory {raw!r} is not a size",
            "give bytes or a size with a unit, e.g. 8GiB, 512MiB or 8000000000 (units: B, KB, MB, GB, TB, "
            "KiB, MiB, GiB, TiB)",
        )
    size = int(float(match[1]) * MEMORY_UNITS[unit])
    if size < 1:
        raise CureError(f"--max-memory {raw!r} is less than one byte", "give a positive size, e.g. 8GiB")
    return size


def help_text(text: str) -> str:
    """argparse formats help with %: a literal percent sign must be doubled."""
    return text.replace("%", "%%")


@dataclass
class SettingsOptions(Generic[M]):
    """The options one parser has for the fields of one settings class."""

    model: type[M]
    flags: dict[str, str]  # field -> flag, e.g. n_prompts -> --prompts
    prog: str

    @classmethod
    def add(
        cls,
        parser: argparse.ArgumentParser,
        model: type[M],
        fields: Iterable[str],
        rename: Mapping[str, str] | None = None,
        defaults: Mapping[str, Any] | None = None,
        helps: Mapping[str, str] | None = None,
        types: Mapping[str, Any] | None = None,
        required: Iterable[str] = (),
        lists: Iterable[str] = (),
    ) -> SettingsOptions[M]:
        """Add one option per field. ``rename``: flags other than ``--field-name``; ``defaults``:
        CLI defaults other than the model's; ``helps``: help other than the description;
        ``types``: annotations that tighten a field's own (e.g. ``Seed`` for a plain ``int``);
        ``lists``: tuple fields given as one or more values (each checked by ``types[field]``,
        default ``str``; the model validates the whole)."""
        rename, defaults, helps, types = rename or {}, defaults or {}, helps or {}, types or {}
        lists = set(lists)
        flags = {}
        for field in fields:
            info = model.model_fields[field]
            flag = rename.get(field, option_flag(field))
            flags[field] = flag
            default = defaults.get(field, info.default)
            text = helps.get(field, info.description or "")
            kwargs: dict[str, Any] = {"dest": _dest(flag), "default": None, "required": field in required}
            if info.annotation is bool:
                kwargs.update(action="store_const", const=not info.default)
            elif _is_literal(info.annotation):
                kwargs.update(choices=choices(model, field))
            elif field in lists:
                kwargs.update(nargs="+", metavar="NAME", type=checked(TypeAdapter(types.get(field, str))))
            else:
                kwargs.update(
                    type=checked(TypeAdapter(types[field]) if field in types else field_adapter(model, field))
                )
            if field in defaults:
                kwargs["default"] = default
            if default not in (None, ()) and info.annotation is not bool and field not in required:
                text = f"{text} (default {default})" if text else f"default {default}"
            parser.add_argument(flag, help=help_text(text), **kwargs)
        return cls(model, flags, parser.prog)

    def values(self, args: argparse.Namespace) -> dict[str, Any]:
        """The fields the user gave (or the CLI defaults), leaving the rest to the model."""
        found = {field: getattr(args, _dest(flag)) for field, flag in self.flags.items()}
        return {field: value for field, value in found.items() if value is not None}

    def build(self, args: argparse.Namespace, **fixed: Any) -> M:
        """The settings from ``args`` (and ``fixed`` values), through the one error handler."""
        return validated(
            self.model,
            {**self.values(args), **fixed},
            f"settings for `{self.prog}`",
            f"see `{self.prog} --help`",
            self.flags,
        )


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _is_literal(annotation: Any) -> bool:
    return get_origin(annotation) is Literal or any(
        get_origin(a) is Literal for a in getattr(annotation, "__args__", ())
    )


def output_path(raw: str | Path, folder: bool = False) -> Path:
    """``raw`` as a path that a file (or, with ``folder``, a folder) can be written to, checked
    before any work: not an existing folder (file) or file (folder), not under a regular file,
    and in a folder this process may write in."""
    path = Path(raw).expanduser()
    if not str(raw).strip():
        raise CureError("the output path is empty", "give a path to write to")
    want = "folder" if folder else "file"
    if path.exists() and path.is_dir() != folder:
        raise CureError(
            f"{path} is {'a file' if folder else 'a folder'}, not a {want}",
            f"give a {want} path, e.g. {path / 'out.html' if path.is_dir() else path.with_suffix('')}-out",
        )
    parent = path if folder and path.is_dir() else path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise CureError(f"{path} lies under {parent}, which is a file", f"write the {want} somewhere in a folder")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise CureError(f"cannot write {path}: {parent} is read-only", f"write the {want} in a folder you can write to")
    return path


def output_file(raw: str) -> Path:
    return output_path(raw)


def output_folder(raw: str) -> Path:
    return output_path(raw, folder=True)


def new_folder(raw: str) -> Path:
    """An output folder that is new or empty: a folder holding anything is refused, so that no
    file of the user's is replaced or mixed with what is written."""
    path = output_path(raw, folder=True)
    if path.is_dir() and any(path.iterdir()):
        raise CureError(f"{path} is not empty", f"give a new or empty folder, e.g. {path}-export")
    return path


REQUEST_HELP = "saved request id (default: 5% of users, seed 0)"
GROUP_FLAGS = {"null_draws": "--draws", "embedding_rows": "--no-embeddings"}


def saved_request(request_id: str) -> Any:
    """The saved :class:`~cure_core.requests.ForgetRequest` of ``request_id``."""
    from cure_core.requests import load_request

    return load_request(request_id)


def request_option(
    p: argparse.ArgumentParser, flag: str = "--request", help: str = REQUEST_HELP, **kwargs: Any
) -> None:
    """``flag`` (``--request``): a saved request id, loaded when parsed."""
    p.add_argument(flag, type=saved_request, default=None, help=help_text(help), **kwargs)


def group_options(p: argparse.ArgumentParser, fields: list[str], helps: dict[str, str] | None = None) -> None:
    from cure_core.groups import GroupSettings

    helps = {"embedding_rows": "group heads and MLPs only, not user/item embedding rows", **(helps or {})}
    p.set_defaults(groups=SettingsOptions.add(p, GroupSettings, fields, rename=GROUP_FLAGS, helps=helps))
