"""``cure attribute``, ``cure circuit`` and ``cure groups``: settings and output paths are
checked first, then the workspace is built and the cached attributions are read or computed.

All three also run under ``torchrun`` (``args.runtime``, :mod:`cure_core.runtime`): each process
computes its shard, every process holds the whole result, and rank 0 alone prints and writes
files."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cure_core.cli import printers
from cure_core.cli.commands import request_of, workspace
from cure_core.cli.options import output_path
from cure_core.errors import CureError

if TYPE_CHECKING:
    from cure_core.circuits import AttributionSettings, CircuitContext


def _context(args: argparse.Namespace, settings: AttributionSettings) -> tuple[CircuitContext, AttributionSettings]:
    """The circuit context of the request, and the settings with the request's default
    corruption when ``--corruption`` was left out. Under ``torchrun`` rank 0 builds it first
    (training a missing model, saving the default request), then the others, on their own GPU."""
    from cure_core.circuits import circuit_context
    from cure_core.groups import default_corruption

    runtime = args.runtime
    with runtime.main_first():
        ws = workspace(args)
        if args.corruption is not None:  # checked before the request is saved
            ws.models.backend.check_corruption(args.corruption)
        request = request_of(args, ws)
        if args.corruption is None:
            settings = settings.model_copy(update={"corruption": default_corruption(request)})
        return circuit_context(ws, request, max_memory=args.max_memory, runtime=runtime), settings


def cmd_attribute(args: argparse.Namespace) -> None:
    from cure_core.circuits import attribution_path, get_attribution

    ctx, settings = _context(args, args.attribution.build(args))
    result = get_attribution(ctx, args.set_name, settings, quiet=args.json, force=args.force)
    if not ctx.runtime.is_main:
        return
    top = min(args.top, result.shape.n_edges)
    if top < args.top:
        warnings.warn(
            f"--top {args.top} is more than the model's {result.shape.n_edges} edges; showing all {top}", stacklevel=1
        )
    if args.json:
        shape = result.shape
        printers.print_json(
            {
                "request": ctx.request.id,
                "set": args.set_name,
                "settings": settings.model_dump(),
                "n_prompts": result.n_prompts,
                "metric_clean": float(result.metric_clean.mean()),
                "metric_corrupt": float(result.metric_corrupt.mean()),
                "top_edges": result.top_edges(top),
                "node_scores": {shape.src_names[i]: float(result.node_scores[i]) for i in range(shape.n_src)},
            }
        )
        return
    printers.print_attribution(
        result,
        ctx.request,
        args.set_name,
        settings,
        top,
        str(attribution_path(ctx.rec, ctx.request, args.set_name, settings)),
    )


def selection(args: argparse.Namespace) -> tuple[str, float]:
    """The circuit selection rule and its value (top-n 100 when none is given)."""
    for how, value in (
        ("threshold", args.threshold),
        ("share", args.share),
        ("greedy", args.greedy),
        ("top-n", args.top_n),
    ):
        if value is not None:
            return how, value
    return "top-n", 100


def export_targets(args: argparse.Namespace, set_names: list[str]) -> dict[str, Path]:
    """The file each set's circuit is exported to, every one checked before any work."""
    from analysis.export import FORMATS

    if not args.export:
        return {}
    fmt, raw = args.export
    if fmt not in FORMATS:
        raise CureError(f"unknown export format {fmt!r}", f"use one of: {', '.join(FORMATS)}")
    path = output_path(raw)
    return {
        name: output_path(path if len(set_names) == 1 else path.with_name(f"{path.stem}-{name}{path.suffix}"))
        for name in set_names
    }


def cmd_circuit(args: argparse.Namespace) -> None:
    import numpy as np

    from analysis.compare import differential_nodes, overlap
    from analysis.export import export
    from cure_core.circuits import circuit_document, find_circuit, get_attribution

    settings = args.attribution.build(args)
    how, value = selection(args)
    set_names = ["forget", "retain", "control-0"] if args.set_name == "both" else [args.set_name]
    targets = export_targets(args, set_names)
    ctx, settings = _context(args, settings)
    attributions = {name: get_attribution(ctx, name, settings, quiet=args.json, force=args.force) for name in set_names}
    results = {
        name: find_circuit(ctx, attributions[name], name, settings, how, value, args.curve_points, quiet=args.json)
        for name in set_names
    }
    if not ctx.runtime.is_main:
        return
    report: dict[str, Any] = {
        "request": ctx.request.id,
        "settings": settings.model_dump(),
        "selection": {"rule": how, "value": value},
        "sets": {},
    }
    for name, res in results.items():
        report["sets"][name] = {
            "prompts": attributions[name].n_prompts,
            "edges": res.circuit.n_edges,
            "nodes": len(res.circuit.nodes()),
            "faithfulness": res.faithfulness.value,
            "metric_clean": res.faithfulness.metric_clean,
            "metric_corrupt": res.faithfulness.metric_corrupt,
            "metric_circuit": res.faithfulness.metric_circuit,
            "curve": [{"top_n": n, "edges_after_pruning": f.n_edges, "faithfulness": f.value} for n, f in res.curve],
        }
    if args.set_name == "both":
        shape = attributions["forget"].shape
        diff = differential_nodes(attributions["forget"], attributions["retain"])
        floor = differential_nodes(attributions["control-0"], attributions["retain"])
        report["overlap"] = {
            "forget_vs_retain": overlap(results["forget"].circuit, results["retain"].circuit),
            "control_vs_retain": overlap(results["control-0"].circuit, results["retain"].circuit),
        }
        report["differential_nodes"] = {
            shape.src_names[i]: {"forget_minus_retain": float(diff[i]), "control_minus_retain": float(floor[i])}
            for i in np.argsort(-np.abs(diff))
        }
    if targets:
        for name, target in targets.items():
            export(circuit_document(results[name], attributions, settings, how, value), args.export[0], target)
        report["exported"] = [str(t) for t in targets.values()]
    if args.json:
        printers.print_json(report)
        return
    printers.print_circuits(report, settings)


def cmd_groups(args: argparse.Namespace) -> None:
    from cure_core.cache import atomic_write_bytes
    from cure_core.groups import groups_for_request

    settings, group_settings = args.attribution.build(args), args.groups.build(args)
    ctx, settings = _context(args, settings)
    groups = groups_for_request(ctx, settings, group_settings, quiet=args.json, force=args.force)
    if not ctx.runtime.is_main:
        return
    if args.csv:
        atomic_write_bytes(args.csv, groups.table.to_csv(index=False).encode())
    if args.json:
        printers.print_json(
            {
                "request": ctx.request.id,
                "settings": {**settings.model_dump(), **group_settings.model_dump()},
                "separability": groups.separability,
                "beyond_noise": groups.beyond_noise,
                "beyond_noise_weighted": groups.beyond_noise_weighted,
                "sizes": groups.sizes().to_dict(),
                "modules": groups.table.to_dict(orient="records"),
                "warnings": groups.warnings,
            }
        )
        return
    printers.print_groups(groups, ctx.request, settings)
    if args.csv:
        print(f"written: {args.csv}")
