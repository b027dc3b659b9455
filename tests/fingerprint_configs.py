"""What ``tests/behaviour_fingerprint.py`` runs: the model of each kind (:class:`Models`) and the
unlearning configurations (:func:`configurations`), each a method with settings changed from
their defaults (:func:`changes`).

``cure_core`` is imported inside the functions: the fingerprint sets its own ``CURE_CACHE`` and
names the module it imports before any of it loads.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

KINDS = ("item", "text", "user")
QUICK = {"steps": 4, "batch_size": 16, "probe_every": 2, "probe_size": 32}
"""The run length of every unlearning configuration."""

SETTINGS: dict[str, tuple[Any, ...]] = {
    "retain_loss": ("kl",),
    "forget_loss": ("ga", "teacher"),
    "retain_rule": ("frozen",),
    "shared_rule": ("sago",),
    "row_rule": ("reset",),
    "retain_weight": (0.0,),
    "npo_beta": (0.5,),
    "seed": (1,),
}
"""The values, other than the default, each setting is fingerprinted with (one at a time)."""

LORA_SETTINGS: dict[str, tuple[Any, ...]] = {"lora_rank": (4,), "lora_alpha": (8.0,), "lora_targets": ("first",)}
"""LoRA runs also change these; ``first``: the first projection of the architecture alone."""

LORA_TARGETS = {"item": ("c_attn",), "text": ("c_attn",), "user": ("q_proj",)}

COMBINATIONS: tuple[dict[str, Any], ...] = ({"forget_loss": "teacher", "row_rule": "reset"},)
"""Settings changed together, as the studies' CURE-style variants run them."""

READS = {
    "ga": ("seed",),
    "graddiff": ("retain_loss", "retain_weight", "seed"),
    "npo": ("retain_loss", "retain_weight", "npo_beta", "seed"),
    "e2urec": ("retain_weight", "seed"),
    "pcgrad": ("retain_loss", "forget_loss", "retain_weight", "npo_beta", "seed"),
    "sago": ("retain_loss", "forget_loss", "retain_weight", "npo_beta", "seed"),
}
"""The settings each method reads; the CURE-style methods read all of them."""

CURE_RULES = ("retain_rule", "shared_rule", "row_rule")
"""The settings of CURE's per-group rules alone."""


# --- the models ---------------------------------------------------------------------------------


class Models:
    """The data, recipes and checkpoint folders the fingerprinted workspaces are built from."""

    def __init__(self, root: Path) -> None:
        from tiny_recipes import TINY_RECIPE, TINY_TEXT

        from cure_core.data import SplitConfig, make_synthetic
        from cure_core.model.example_checkpoint import write_example

        # the tests' synthetic data, written out rather than imported from the tests: a
        # fingerprint must not change when a test changes its data; the tiny recipes are fixed
        self.item_data = make_synthetic(n_users=100, n_items=40, seed=0)
        self.text_data = make_synthetic(n_users=60, n_items=30, ratings_per_user=(12, 16), seed=0)
        self.text_split = SplitConfig(history_len=3)
        self.item_recipe = TINY_RECIPE
        self.text_recipe = TINY_TEXT
        self.checkpoint, self.adapter = root / "checkpoint" / "model", root / "checkpoint" / "adapter"
        write_example("llama", self.checkpoint, self.text_data, self.adapter)
        # the adapter names its base by a fixed id, as one made on a hub model does, and its
        # targets in sorted order (peft writes them in set order): every key that fingerprints
        # the adapter's files is then the same wherever the folder lies, in every process
        config_file = self.adapter / "adapter_config.json"
        config = json.loads(config_file.read_text())
        config["base_model_name_or_path"] = "example/tiny-llama"
        config["target_modules"] = sorted(config["target_modules"])
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True))

    def workspace(self, kind: str):
        """A fresh workspace on ``kind``'s model (nothing held over from another configuration)."""
        from cure_core.model_source import ModelSource
        from cure_core.workspace import Workspace

        torch.manual_seed(0)
        if kind == "item":
            return Workspace.open(dataset=self.item_data, recipe=self.item_recipe)
        if kind == "text":
            return Workspace.open(dataset=self.text_data, split=self.text_split, recipe=self.text_recipe)
        source = ModelSource(
            model=str(self.checkpoint),
            adapter=str(self.adapter),
            retrain_model=str(self.checkpoint),
            profile="compact",
            device="cpu",
        )
        return Workspace.open(dataset=self.text_data, split=self.text_split, source=source)


# --- the unlearning configurations --------------------------------------------------------------


def changes(kind: str, lora: bool, method: str, cure_style: bool) -> list[dict[str, Any]]:
    """The settings changed from the defaults, run by run, for ``method`` on ``kind`` in one mode.

    Full-parameter runs of the item model (the cheapest) change every setting the method reads,
    one at a time, and then the settings it does not read all at once (they must change nothing
    but the run's id). Elsewhere each method runs at its defaults, and CURE with each of its
    rules and with its teacher objective; LoRA runs of CURE and NPO (the group rules on the
    adapter's factors, and a plain adapter) also change each LoRA setting. CURE-style methods
    run the studies' combinations everywhere."""
    reads = tuple(SETTINGS) if cure_style else READS[method]
    out: list[dict[str, Any]] = [{}]
    if kind == "item" and not lora:
        out += [{name: value} for name in reads for value in SETTINGS[name]]
        ignored = {name: values[-1] for name, values in SETTINGS.items() if name not in reads}
        if ignored:
            out.append(ignored)
    elif method == "cure":
        out += [{name: value} for name in CURE_RULES for value in SETTINGS[name]] + [{"forget_loss": "teacher"}]
    if cure_style:
        out += list(COMBINATIONS)
    if lora and method in ("cure", "npo"):
        out += [{name: value} for name, values in LORA_SETTINGS.items() for value in values]
    return out


def configurations(kind: str, lora: bool) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(name, settings)`` of every run of ``kind`` in one mode, each method's defaults first."""
    from cure_core.unlearning.methods import METHODS

    for method, spec in METHODS.items():
        for changed in changes(kind, lora, method, spec.needs_groups):
            if changed.get("lora_targets") == "first":
                changed = {**changed, "lora_targets": LORA_TARGETS[kind]}
            label = ",".join(f"{k}={'+'.join(v) if isinstance(v, tuple) else v}" for k, v in changed.items())
            name = f"{kind}/{'lora' if lora else 'full'}/{method}" + (f"/{label}" if label else "")
            yield name, {"method": method, **changed}


def check_settings_covered() -> None:
    """Warn when UnlearnConfig has a choice that :data:`SETTINGS` does not fingerprint."""
    import typing

    from cure_core.unlearning.methods import UnlearnConfig

    for name, field in UnlearnConfig.model_fields.items():
        if typing.get_origin(field.annotation) is typing.Literal and name != "method":
            missing = set(typing.get_args(field.annotation)) - {field.default, *SETTINGS.get(name, ())}
            if missing:
                print(f"warning: {name}={sorted(missing)} is not fingerprinted", file=sys.stderr)
