"""``cure unlearn`` and ``cure compare``: method names, strengths, settings and the output
folder are checked before the workspace is built or any run starts. Both work on the item
model trained here and on a user's checkpoint (``--model``), with or without a Retrain; a
run never writes anywhere but the cache (and ``--out``)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from cure_core.cli import printers
from cure_core.cli.commands import request_of, workspace
from cure_core.errors import CureError

if TYPE_CHECKING:
    from cure_core.circuits import AttributionSettings
    from cure_core.groups import GroupSettings
    from cure_core.requests import ForgetRequest
    from cure_core.unlearning.methods import UnlearnConfig


def known_methods(names: list[str]) -> list[str]:
    """``names`` if every one is a registered method; one error naming the unknown ones."""
    from cure_core.unlearning.methods import METHODS

    if not names:
        raise CureError("no unlearning method given", f"name one or more of: {', '.join(METHODS)} (or all)")
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise CureError(
            f"unknown unlearning method(s) {', '.join(map(repr, unknown))}", f"use one of: {', '.join(METHODS)}"
        )
    return names


LORA_SHAPE = ("lora_rank", "lora_alpha", "lora_targets")


def lora_flags(args: argparse.Namespace) -> None:
    """Refuse the adapter's shape (``--lora-rank`` ...) and ``--save-merged`` without ``--lora``:
    ignored, they would leave a run updating every weight that the user meant as an adapter."""
    if wants_lora(args):
        return
    given = args.unlearn.values(args)
    flags = [args.unlearn.flags[f] for f in LORA_SHAPE if f in given]
    flags += ["--save-merged"] if getattr(args, "save_merged", False) else []
    if flags:
        raise CureError(
            f"{flags[0]} applies to LoRA runs, but --lora was not given",
            f"add --lora to train an adapter, or leave out {flags[0]} for a run on the full weights",
        )


def wants_lora(args: argparse.Namespace) -> bool:
    """Whether the command line asks for LoRA runs (``--lora``)."""
    return bool(args.unlearn.values(args).get("lora"))


def configs(args: argparse.Namespace, methods: list[str], strengths: list[float] | None) -> list[UnlearnConfig]:
    """Every (method, strength) run's settings, all validated before the first one runs."""
    from cure_core.unlearning.methods import METHODS

    lora = wants_lora(args)
    return [args.unlearn.build(args, method=m, strength=s) for m in methods for s in strengths or METHODS[m].grid(lora)]


def group_inputs(args: argparse.Namespace, request: ForgetRequest) -> tuple[AttributionSettings, GroupSettings]:
    """CURE-style runs: the attribution (corruption by the request unless given) and group settings."""
    from cure_core.groups import default_corruption

    attribution = args.attribution.build(args)
    if args.corruption is None:
        attribution = attribution.model_copy(update={"corruption": default_corruption(request)})
    return attribution, args.groups.build(args)


def cmd_unlearn(args: argparse.Namespace) -> None:
    """One run; under ``accelerate launch --num_processes N`` every process of ``args.runtime``
    takes part and rank 0 prints."""
    from cure_core.evaluate import reference_comparison
    from cure_core.unlearning.lora import check_config
    from cure_core.unlearning.methods import METHODS
    from cure_core.unlearning.runner import check_batch_size
    from cure_core.unlearning.runs import get_run

    (method,) = known_methods([args.method])
    lora_flags(args)
    config = args.unlearn.build(
        args,
        strength=args.strength if args.strength is not None else METHODS[method].default_strength(wants_lora(args)),
    )
    args.groups.build(args)  # checked before the workspace; rebuilt with the request below
    check_config(config, METHODS[method].needs_groups)
    runtime = args.runtime
    check_batch_size(config.batch_size, runtime)
    ws = workspace(args)
    request = request_of(args, ws)
    attribution, group_settings = group_inputs(args, request)
    report = get_run(
        ws,
        request,
        config,
        attribution,
        group_settings,
        quiet=args.json,
        force=args.force,
        save_merged=args.save_merged,
        runtime=runtime,
    )
    if not runtime.is_main:
        return
    if args.json:
        printers.print_json(report)
        return
    original, retrain = ws.models.reference_models(request, quiet=True)
    printers.print_run(report, reference_comparison(original, retrain, request, ws.data.samples, ws.data.sets(request)))


def cmd_compare(args: argparse.Namespace) -> None:
    from cure_core.cache import atomic_write_bytes
    from cure_core.unlearning.compare import comparison_table, pareto_figure, reference_rows
    from cure_core.unlearning.lora import check_config
    from cure_core.unlearning.methods import METHODS
    from cure_core.unlearning.runs import get_run

    lora_flags(args)
    methods = (
        list(METHODS)
        if args.methods.strip() == "all"
        else known_methods([m.strip() for m in args.methods.split(",") if m.strip()])
    )
    grid = configs(args, methods, args.strengths)
    for config in grid:
        check_config(config, METHODS[config.method].needs_groups)
    args.groups.build(args)
    ws = workspace(args)
    request = request_of(args, ws)
    attribution, group_settings = group_inputs(args, request)
    reports = []
    for config in grid:
        report = get_run(ws, request, config, attribution, group_settings)
        reports.append(report)
        printers.print_grid_row(report)
    refs = reference_rows(ws, request)
    table = comparison_table(reports, refs)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "comparison.csv", table.to_csv(index=False).encode())
    atomic_write_bytes(out / "comparison.md", table.to_markdown(index=False, floatfmt=".4g").encode())
    fig = pareto_figure(reports, refs, f"Forget/retain trade-off on {request.id} ({request.description})")
    atomic_write_bytes(out / "pareto.html", fig.to_html(include_plotlyjs=True, full_html=True).encode())
    printers.print_comparison(table.to_markdown(index=False, floatfmt=".4g"), reports)
    print(f"written: {out / 'comparison.md'}, {out / 'comparison.csv'}, {out / 'pareto.html'}")
