"""Argument values that are more than a number: id lists, ``USER:ITEM`` ratings, set names.

Each parser raises a :class:`~cure_core.errors.CureError` naming the flag, so a bad value is one
line before any data is read.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Sequence
from typing import Any

from cure_core.errors import CureError


def nonblank(flag: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if not raw.strip():
            raise CureError(f"{flag} is empty", f"give a value after {flag}, or leave {flag} out")
        return raw.strip()

    return parse


def id_list(flag: str) -> Callable[[str], list[str]]:
    def parse(raw: str) -> list[str]:
        ids = [part.strip() for part in raw.split(",") if part.strip()]
        if not ids:
            raise CureError(f"{flag} {raw!r} names no id", f"give comma-separated ids after {flag}, e.g. {flag} 1,2,3")
        return ids

    return parse


def interactions(raw: str) -> list[tuple[str, str]]:
    pairs = []
    for pair in id_list("--interactions")(raw):
        user, sep, item = pair.partition(":")
        if not sep or ":" in item:
            raise CureError(f"interaction {pair!r} is not USER:ITEM", "write ratings as USER:ITEM, e.g. 196:242")
        if not user.strip() or not item.strip():
            raise CureError(
                f"interaction {pair!r} has a blank user or item id", "write ratings as USER:ITEM, e.g. 196:242"
            )
        pairs.append((user.strip(), item.strip()))
    return pairs


def set_name(allow_both: bool) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if re.fullmatch(r"forget|retain|control(-\d+)?" + ("|both" if allow_both else ""), raw) is None:
            raise CureError(
                f"unknown set {raw!r}",
                "use forget, retain, or control-N (a matched control draw, e.g. control-0)"
                + (", or both" if allow_both else ""),
            )
        return raw

    return parse


class SetExport(argparse.Action):
    """``--export FORMAT DIR``: a known format and a new or empty folder, checked as parsed."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        from cure_core.cli.options import new_folder
        from cure_core.set_export import check_format

        fmt, folder = values  # type: ignore[misc]  # nargs=2
        setattr(namespace, self.dest, (check_format(fmt), new_folder(folder)))
