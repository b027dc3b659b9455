"""Prompt profiles: how a recommender checkpoint was prompted, as a TOML data file.

A profile holds three Jinja2 templates (rendered in Jinja's sandbox with bounded output,
undefined names are errors, text is kept byte for byte, a trailing newline included) and the
answer words::

    description = "..."
    add_special_tokens = true     # tokenize as the tokenizer does by default (BOS for LLaMA)
    template = '''...'''          # the whole prompt; variables: PROMPT_VARIABLES
    [item]
    template = '{{ name }}'       # one item; variables: ITEM_VARIABLES
    [history]
    entry = '"{{ item }}"'        # one history entry; variables: ENTRY_VARIABLES
    [answer]
    yes = "Yes"
    no = "No"

Where the answer is read: at the last token of the rendered prompt (the first generated
step), from the logits of the *first token* each answer word gets when the tokenizer writes it
right after the prompt (``cure_core.profiles.answers``) — never a hard-coded id.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from cure_core.errors import CureError

PROFILE_DIR = Path(__file__).parent
SHIPPED_PROFILES = ("tallrec", "e2urec", "compact")

# Item: ``name`` is the title as the dataset writes it, with its year ("Toy Story (1995)");
# ``genres`` a list of str.
ITEM_VARIABLES = frozenset({"name", "title", "year", "genres"})
# History entry, oldest first: ``item`` is the item as [item].template writes it, ``index0`` /
# ``index`` its position from 0 / 1, ``stars`` the user's rating (int), ``liked`` (rating > 3).
ENTRY_VARIABLES = frozenset({"item", "index0", "index", "stars", "liked"})
# Prompt: ``history`` / ``liked`` / ``disliked`` are lists of written entries (all in time
# order; a list renders as Python writes it, ['a', 'b']), ``target`` the written target item;
# ``user_known`` is False for a user the model is treated as never having seen (``user_id``
# is then ""); ``gender``, ``age``, ``occupation`` come from the dataset's user file
# (MovieLens-100K's u.user: "M"/"F", years, e.g. "technician").
USER_FIELDS = ("gender", "age", "occupation")
PROMPT_VARIABLES = frozenset({"history", "liked", "disliked", "target", "user_id", "user_known", *USER_FIELDS})

_TOP_KEYS = {"description", "add_special_tokens", "template", "item", "history", "answer"}
_TABLE_KEYS = {"item": {"template"}, "history": {"entry"}, "answer": {"yes", "no"}}
MAX_OUTPUT = 1 << 16
"""The most characters one rendering may produce (a prompt of a long history is a few thousand)."""


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox (no attribute escapes, ranges of at most ``MAX_RANGE``) whose
    ``*`` and ``**`` cannot build a huge string, list or number either, so a profile cannot
    exhaust memory or time while rendering."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > 64:
            raise SecurityError(f"the exponent {right} is too large for a template")
        if operator == "*":
            sizes = [len(v) for v in (left, right) if isinstance(v, str | list | tuple)]
            counts = [v for v in (left, right) if isinstance(v, int)]
            if sizes and counts and sizes[0] * max(counts[0], 0) > MAX_OUTPUT:
                raise SecurityError(f"a template may write at most {MAX_OUTPUT} characters")
        return super().call_binop(context, operator, left, right)


_ENV = BoundedSandbox(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)

# What a rendering is tried with when a profile loads, so a template that fails fails there
SAMPLE_ITEM = {"name": "Toy Story (1995)", "title": "Toy Story", "year": 1995, "genres": ["Animation", "Comedy"]}
SAMPLE_ENTRY = {"item": "Toy Story (1995)", "index0": 0, "index": 1, "stars": 5, "liked": True}
SAMPLE_PROMPT = {
    "history": ["Toy Story (1995)", "Heat (1995)"],
    "liked": ["Toy Story (1995)"],
    "disliked": ["Heat (1995)"],
    "target": "Babe (1995)",
    "user_id": "1",
    "user_known": True,
    "gender": "M",
    "age": 24,
    "occupation": "technician",
}


@dataclass(frozen=True)
class Profile:
    """A loaded, checked prompt profile (see the module docstring for the file format)."""

    name: str
    description: str
    template: str
    item_template: str
    entry_template: str
    yes: str
    no: str
    add_special_tokens: bool = True

    @property
    def variables(self) -> frozenset[str]:
        """The PROMPT_VARIABLES the prompt template uses."""
        return frozenset(meta.find_undeclared_variables(_ENV.parse(self.template)))

    @property
    def user_fields(self) -> tuple[str, ...]:
        """The user-file fields the prompt uses (the dataset must have them)."""
        return tuple(f for f in USER_FIELDS if f in self.variables)

    @cached_property
    def _compiled(self) -> tuple[jinja2.Template, jinja2.Template, jinja2.Template]:
        return (
            _ENV.from_string(self.template),
            _ENV.from_string(self.item_template),
            _ENV.from_string(self.entry_template),
        )

    def render(self, **fields: Any) -> str:
        """The prompt; ``fields`` are PROMPT_VARIABLES."""
        return self._rendered(0, "template", fields)

    def render_item(self, **fields: Any) -> str:
        return self._rendered(1, "[item] template", fields)

    def render_entry(self, **fields: Any) -> str:
        return self._rendered(2, "[history] entry", fields)

    def _rendered(self, which: int, name: str, fields: dict[str, Any]) -> str:
        """One template rendered, its output bounded; any failure is one :class:`CureError`."""
        try:
            text = self._compiled[which].render(**fields)
        except Exception as err:
            raise CureError(
                f"profile {self.name}: the {name} fails when rendered ({type(err).__name__}: {err})",
                "fix the template; {{ name }} writes a variable, {% for x in list %}...{% endfor %} a loop",
            ) from None
        if len(text) > MAX_OUTPUT:
            raise CureError(
                f"profile {self.name}: the {name} writes {len(text)} characters (at most {MAX_OUTPUT})",
                "write a shorter prompt",
            )
        return text

    def check_rendering(self) -> None:
        """Render every template once with sample values (known and unknown user)."""
        self.render_item(**SAMPLE_ITEM)
        self.render_entry(**SAMPLE_ENTRY)
        self.render(**SAMPLE_PROMPT)
        self.render(**{**SAMPLE_PROMPT, "user_known": False, "user_id": ""})


def load_profile(name_or_path: str | Path) -> Profile:
    """A shipped profile by name (``tallrec``, ``e2urec``, ``compact``) or a ``.toml`` file."""
    path = Path(name_or_path)
    if str(name_or_path) in SHIPPED_PROFILES:
        path = PROFILE_DIR / f"{name_or_path}.toml"
    elif not path.is_file():
        raise CureError(
            f"no prompt profile {str(name_or_path)!r}",
            f"give one of {', '.join(SHIPPED_PROFILES)} or the path of a profile .toml file",
        )
    where = f"profile {path}"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise CureError(
            f"{where} is not valid TOML ({err})",
            "fix the file's syntax (https://toml.io); copy a shipped profile as a start",
        ) from None
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise CureError(f"{where} has unknown key(s) {sorted(unknown)}", f"use only {sorted(_TOP_KEYS)}")
    for table, keys in _TABLE_KEYS.items():
        extra = set(data[table]) - keys if isinstance(data.get(table), dict) else set()
        if extra:
            raise CureError(f"{where} [{table}] has unknown key(s) {sorted(extra)}", f"use only {sorted(keys)}")
    profile = Profile(
        name=path.stem,
        description=_get(data, "description", str, where, default=""),
        template=_get(data, "template", str, where),
        item_template=_get(data.get("item", {}), "template", str, f"{where} [item]"),
        entry_template=_get(data.get("history", {}), "entry", str, f"{where} [history]"),
        yes=_get(data.get("answer", {}), "yes", str, f"{where} [answer]"),
        no=_get(data.get("answer", {}), "no", str, f"{where} [answer]"),
        add_special_tokens=_get(data, "add_special_tokens", bool, where, default=True),
    )
    _check_template(profile.template, PROMPT_VARIABLES, f"{where}: template")
    _check_template(profile.item_template, ITEM_VARIABLES, f"{where}: [item] template")
    _check_template(profile.entry_template, ENTRY_VARIABLES, f"{where}: [history] entry")
    if not profile.yes.strip() or not profile.no.strip() or profile.yes == profile.no:
        raise CureError(
            f"{where}: the answers {profile.yes!r} and {profile.no!r} must be two different non-empty words",
            'set [answer] yes and no, e.g. "Yes" and "No"',
        )
    profile.check_rendering()
    return profile


def _get(table: Any, key: str, kind: type, where: str, default: Any = None) -> Any:
    if not isinstance(table, dict):
        raise CureError(f"{where} is not a table", "write it as a [section] with key = value lines")
    value = table.get(key, default)
    if value is None:
        raise CureError(
            f"{where} lacks {key!r}", "add it; the shipped profiles (cure_core/profiles/*.toml) show every key"
        )
    if not isinstance(value, kind):
        raise CureError(
            f"{where}: {key!r} must be a {kind.__name__}, not {type(value).__name__}",
            f"write {key} as a TOML {'string' if kind is str else 'true/false'}",
        )
    return value


def _check_template(source: str, allowed: frozenset[str], where: str) -> None:
    try:
        used = meta.find_undeclared_variables(_ENV.parse(source))
    except jinja2.TemplateSyntaxError as err:
        raise CureError(
            f"{where} is not a valid Jinja2 template (line {err.lineno}: {err.message})",
            "fix the template; {{ name }} writes a variable, {% if %}...{% endif %} a condition",
        ) from None
    unknown = used - allowed
    if unknown:
        raise CureError(f"{where} uses unknown variable(s) {sorted(unknown)}", f"use only {sorted(allowed)}")
