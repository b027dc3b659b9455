"""Every rule that reads what earlier versions wrote, in one place.

Cache entries outlive the code that wrote them: a model folder's ``meta.json`` from before the
:class:`~cure_core.model.card.ModelCard`, recipes whose fields were added or removed since their
models were keyed, reports without a count kept later. Each rule below says which form it reads
and what that form meant, so that an old entry loads with its old meaning or not at all (then it
is rebuilt with a warning) — never under another meaning. Retiring a rule means raising the
version of the entries it serves (``cure_core.cache_keys``), so they are rebuilt instead.
"""

from __future__ import annotations

from typing import Any

#: Item-recipe fields added after models were cached, with the value those models were trained
#: with: left out of a model's key while they hold it, filled in when an old record lacks them.
LATER_FIELDS_AS_BEFORE: dict[str, object] = {"activation": "gelu_new", "train_precision": "fp32"}

#: Item-recipe fields no longer in the recipe, with the value every cached model was keyed with.
#: ``max_minutes`` was a wall-clock budget: it made a model depend on the machine's load, so
#: training now stops by epochs and validation patience only (models it cut short are detected and
#: retrained, see ``cure_core.workspace.cut_short``).
REMOVED_FIELDS_AS_BEFORE: dict[str, object] = {"max_minutes": 10.0}


def item_recipe_key_spec(fields: dict[str, Any]) -> dict[str, Any]:
    """An item recipe's fields as they enter model keys: removed fields with the value they
    always had, later fields left out while they hold the value earlier models were trained
    with — so an upgrade does not orphan cached models (or the runs and studies keyed on them)."""
    spec = {**REMOVED_FIELDS_AS_BEFORE, **fields}
    for name, value in LATER_FIELDS_AS_BEFORE.items():
        if spec[name] == value:
            del spec[name]
    return spec


def recorded_recipe(fields: dict[str, Any]) -> dict[str, Any]:
    """A recipe as an old ``meta.json`` recorded it, in today's fields: an item recipe without
    the removed fields and with the later ones at the value it was trained with. A text recipe
    (``kind: text``) has kept its fields."""
    if fields.get("kind") == "text":
        return fields
    kept = {k: v for k, v in fields.items() if k not in REMOVED_FIELDS_AS_BEFORE}
    return {**LATER_FIELDS_AS_BEFORE, **kept}


#: ``mode`` of an old ``meta.json`` → the card's ``kind``. ``text`` marked a Hugging Face folder
#: that a text-mode run saved (a checkpoint, loaded as ``--model``).
META_MODES = {"item": "item", "text-recipe": "text-recipe", "text": "checkpoint", "lora": "lora"}


def card_fields(meta: dict[str, Any]) -> dict[str, Any]:
    """The :class:`~cure_core.model.card.ModelCard` fields of a ``meta.json`` written before the
    card (no ``card_version``): a dict with ``mode`` and one ``weights_sha256``.

    That one field meant two things: for an item folder, the sha256 of its whole weights file
    (checked on load *and* entered in cache keys), so it becomes both ``file_sha256`` and
    ``fingerprint``; for a text run's folder or a LoRA adapter, the sampled
    :func:`~cure_core.model.checkpoint_model.fingerprint`, so it becomes ``fingerprint`` alone. A text
    model trained here already wrote its ``file_sha256`` apart. A mode no version wrote is an error.
    """
    fields = dict(meta)
    mode = fields.pop("mode", None)
    if mode not in META_MODES:
        raise ValueError(f"meta.json has no known mode ({mode!r})")
    weights = fields.pop("weights_sha256", None)
    if mode == "item":
        fields["file_sha256"] = weights
    if weights is not None:
        fields["fingerprint"] = weights
    if isinstance(fields.get("recipe"), dict):
        fields["recipe"] = recorded_recipe(fields["recipe"])
    return {**fields, "kind": META_MODES[mode]}


def reported_trainable_params(trainable: int | None, params_total: int, full: bool) -> int | None:
    """Parameters a run could change: its report's count, else (reports written before the count
    was kept) every weight of a full run; unknown for an adapter."""
    if trainable is not None:
        return int(trainable)
    return params_total if full else None
