"""The options of ``cure unlearn`` and ``cure compare``: the method's settings generated from
:class:`~cure_core.unlearning.methods.UnlearnConfig`, the corruption and the group threshold
CURE's groups are found with."""

from __future__ import annotations

import argparse

from cure_core.cli.options import SettingsOptions, group_options, number_list, output_folder, request_option
from cure_core.settings import Seed


def unlearn_options(p: argparse.ArgumentParser, with_method: bool) -> None:
    from cure_core.circuits import AttributionSettings
    from cure_core.unlearning.methods import METHODS, UnlearnConfig

    request_option(p)
    fields = list(UnlearnConfig.OPTIONS)
    helps = {
        "method": (
            f"one of {', '.join(METHODS)} (cure-nocircuit: CURE's rules with every head and MLP task-shared, "
            "the ablation; cure-random: CURE's rules on groups of its sizes drawn at random by --seed, the control)"
        ),
        "strength": "Adam learning rate (default: the middle of the method's sweep grid, ×10 with --lora)",
        "steps": "unlearning steps",
        "batch_size": "forget and retain samples per step",
        "seed": "seed of the batch order",
        "retain_loss": "GradDiff and the combining methods: retain NLL or KL to the original",
        "retain_rule": "cure: what retain-specific modules do",
        "shared_rule": "cure: how task-shared modules combine g_f and g_r",
        **{f: f"{UnlearnConfig.model_fields[f].description} (with --lora)" for f in ("lora_alpha", "lora_targets")},
    }
    unlearn = SettingsOptions.add(
        p,
        UnlearnConfig,
        (["method", "strength"] if with_method else []) + fields,
        defaults={"strength": None},
        helps=helps,
        types={"seed": Seed},
        required=["method"] if with_method else [],
        lists=["lora_targets"],
    )
    corruption = SettingsOptions.add(
        p,
        AttributionSettings,
        ["corruption"],
        defaults={"corruption": None},
        helps={"corruption": "cure: corruption for the groups (default: target for item requests, history otherwise)"},
    )
    group_options(p, ["threshold"], {"threshold": "cure: group threshold, a share of importance in (0, 1]"})
    p.set_defaults(unlearn=unlearn, attribution=corruption)


def add_unlearn(p: argparse.ArgumentParser) -> None:
    from cure_core.cli.unlearn_commands import cmd_unlearn

    unlearn_options(p, with_method=True)
    p.add_argument("--force", action="store_true", help="recompute even if this run is cached")
    p.add_argument(
        "--save-merged",
        action="store_true",
        help="with --lora: also save the adapter merged into a copy of the model (the run's merged/ folder)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_unlearn)


def add_compare(p: argparse.ArgumentParser) -> None:
    from cure_core.cli.unlearn_commands import cmd_compare
    from cure_core.settings import field_adapter
    from cure_core.unlearning.methods import UnlearnConfig

    unlearn_options(p, with_method=False)
    p.add_argument("--methods", default="all", help="comma-separated methods or 'all'")
    p.add_argument(
        "--strengths",
        type=number_list(field_adapter(UnlearnConfig, "strength")),
        default=None,
        help="comma-separated strengths for every method (default: each method's grid, ×10 with --lora)",
    )
    p.add_argument("--out", type=output_folder, default="compare", help="output folder (default ./compare)")
    p.set_defaults(func=cmd_compare)
