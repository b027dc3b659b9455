"""What every pydantic settings class shares: choice lists read from ``Literal`` fields, the seed
type, and the one formatter of validation errors used by the CLI, recipes and study settings.

A choice list (corruptions, forget objectives, threshold rules, …) is written once, as the
``Literal`` annotation of its settings field; the CLI's ``choices`` and the app's selectboxes
read it with :func:`choices`.
"""

from __future__ import annotations

import json
import types
from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from cure_core.errors import CureError

Seed = Annotated[int, Field(ge=0, description="random seed (numpy takes non-negative seeds only)")]
M = TypeVar("M", bound=BaseModel)


def choices(model: type[BaseModel], field: str) -> tuple[Any, ...]:
    """The values a ``Literal`` field allows (``X | None`` fields included), in declared order."""
    found: list[Any] = []
    pending = [model.model_fields[field].annotation]
    while pending:
        annotation = pending.pop(0)
        origin = get_origin(annotation)
        if origin is Literal:
            found += get_args(annotation)
        elif origin in (Union, types.UnionType, Annotated):
            pending += [a for a in get_args(annotation) if a is not type(None)]
    if not found:
        raise TypeError(f"{model.__name__}.{field} is not a Literal field")
    return tuple(found)


def field_adapter(model: type[BaseModel], field: str) -> TypeAdapter:
    """A validator of one field alone, with its constraints (``ge``, ``le``, …)."""
    info = model.model_fields[field]
    return TypeAdapter(Annotated[(info.annotation, *info.metadata)]) if info.metadata else TypeAdapter(info.annotation)


def describe(err: ValidationError, names: Mapping[str, str] | None = None) -> str:
    """Every problem of ``err`` on one line; ``names`` maps field names to what the user typed
    (``n_prompts`` → ``--prompts``)."""
    parts = []
    for e in err.errors():
        loc = [str(x) for x in e["loc"]]
        if loc and names:
            loc[0] = names.get(loc[0], loc[0])
        where = ".".join(loc)
        given = e.get("input")
        got = "" if isinstance(given, dict) or e["type"] == "missing" else f" (got {given!r})"
        msg = e["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {msg}{got}" if where else f"{msg}{got}")
    return "; ".join(parts)


def option_flag(field: str) -> str:
    """The command-line option of a settings field, unless renamed: ``n_prompts`` -> ``--n-prompts``."""
    return "--" + field.replace("_", "-")


def validated(
    model: type[M], data: Mapping[str, Any], what: str, fix: str, names: Mapping[str, str] | None = None
) -> M:
    """``model`` from ``data``, or one :class:`CureError` naming every bad field (by ``names``)
    and, for unknown fields, the valid ones."""
    try:
        return model.model_validate(dict(data))
    except ValidationError as err:
        if any(e["type"] == "extra_forbidden" for e in err.errors()):
            fix = f"valid fields: {', '.join(names.get(f, f) if names else f for f in model.model_fields)}"
        raise CureError(f"invalid {what}: {describe(err, names)}", fix) from None


def json_object(text: str, where: str) -> dict[str, Any]:
    """``text`` parsed as one JSON object; ``where`` names the input in the error."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise CureError(
            f"{where} is not valid JSON ({err})",
            "give one JSON object of field names and values, with double quotes around names, e.g. '{\"name\": 1}'",
        ) from None
    if not isinstance(value, dict):
        raise CureError(
            f"{where} is a JSON {type(value).__name__}, not an object",
            "give one JSON object of field names and values, e.g. '{\"name\": 1}'",
        )
    return value
