"""One rule for every cache key: ``cache_key(kind, spec)``, a truncated sha256 of the spec.

Each kind of cache entry has its :class:`KeyScheme`: the schema version of its spec and how many
hex digits name an entry. Version 1 of every kind hashes the spec exactly as the entries cached
so far were keyed, so they are found under the same names. When what a spec *means* changes
while the spec itself does not (a new rule computes other values from the same settings), the
kind's version is raised: from version 2 on the kind and version are hashed with the spec, so
no entry of an earlier version is found again under the new meaning — it is rebuilt.

A spec is a JSON-able mapping, hashed as JSON with sorted keys, or a pydantic model, hashed as
its own JSON in field order (attribution settings were keyed that way from the start).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

KeyKind = Literal["model", "request", "run", "attribution", "study", "reference"]


@dataclass(frozen=True)
class KeyScheme:
    """How one kind of cache entry is keyed: its spec's schema version and the digest's length."""

    version: int
    length: int


KEY_SCHEMES: dict[KeyKind, KeyScheme] = {
    "model": KeyScheme(version=1, length=10),  # cache/models/<role>-<data or request>-<key>
    "request": KeyScheme(version=1, length=8),  # <kind>-<key>: a saved forget request's id
    "run": KeyScheme(version=1, length=10),  # cache/runs/<method>-<key>
    "attribution": KeyScheme(version=1, length=12),  # cache/attributions/…/<set>-<key>.npz
    "study": KeyScheme(version=1, length=10),  # cache/studies/<study>-<key>
    "reference": KeyScheme(version=1, length=16),  # cache/references/<key>.json
}


def spec_text(spec: Mapping[str, Any] | BaseModel) -> str:
    """The text a spec is hashed as: sorted-key JSON of a mapping (values JSON cannot write enter
    as their ``str``), or a pydantic model's own JSON."""
    if isinstance(spec, BaseModel):
        return spec.model_dump_json()
    return json.dumps(spec, sort_keys=True, default=str)


def cache_key(kind: KeyKind, spec: Mapping[str, Any] | BaseModel) -> str:
    """The key of the ``kind`` entry that ``spec`` describes, under the kind's current version."""
    scheme = KEY_SCHEMES[kind]
    text = spec_text(spec)
    if scheme.version > 1:
        text = f"{kind} v{scheme.version}\n{text}"
    return hashlib.sha256(text.encode()).hexdigest()[: scheme.length]
