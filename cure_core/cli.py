"""The ``cure`` command line. Every user error prints one line and exits with status 2."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cure_core.errors import CureError

if TYPE_CHECKING:  # imported lazily at run time: torch is slow to import
    from cure_core.progress import ProgressFn
    from cure_core.workspace import Workspace

APP_ENTRY = Path(__file__).resolve().parent.parent / "app" / "Home.py"
RECIPE_HELP = (
    'recipe overrides of the default model as JSON, e.g. \'{"n_layer": 2, "d_model": 32}\' for a quick demo model, '
    "or the first default's fields (README, 'Default model') to reach its cached models and results"
)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CureError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; cached entries are written atomically, nothing partial was kept", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `cure forget | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cure", description="CURE Studio: circuit-aware unlearning for LLM recommenders")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    def command(name: str, func, help_text: str, uses_model: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--data", default=None, help="GroupLens ml-100k folder/zip or RecBole atomic files (default: MovieLens-100K)")
        if uses_model:
            p.add_argument("--recipe-json", help=RECIPE_HELP)
        p.set_defaults(func=func)
        return p

    command("data", _cmd_data, "print the dataset summary (users, items, samples per split, positive rates)", uses_model=False)

    p = command("train", _cmd_train, "train the default recommender (or a request's Retrain) and print its metrics")
    p.add_argument("--retrain", metavar="REQUEST_ID", help="train the Retrain reference of this request instead")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--force", action="store_true", help="retrain even if the model is cached (the old one is replaced only on success)")
    # Used by Workspace.ensure_models when it trains Original and Retrain side by side.
    p.add_argument("--progress-file", help=argparse.SUPPRESS)
    p.add_argument("--split-json", help=argparse.SUPPRESS)

    p = command("forget", _cmd_forget, "create a forget request and print its sets")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--users", help="share of users, e.g. 5%% or 0.05 (default 5%%)")
    who.add_argument("--user-ids", help="comma-separated user ids")
    who.add_argument("--genre", help="every sample with a movie of this genre")
    who.add_argument("--items", help="comma-separated item ids")
    who.add_argument("--interactions", help="comma-separated USER:ITEM ratings")
    p.add_argument("--scope", choices=["target", "target_or_history"], default="target_or_history", help="item requests: match the target only, or the history too")
    p.add_argument("--seed", type=int, default=0)

    p = command("evaluate", _cmd_evaluate, "evaluate a model on a forget request next to Retrain (trains what is missing)")
    p.add_argument("--request", default=None, help="request id (default: 5%% of users, seed 0)")
    p.add_argument("--model", default="original", help="'original', 'retrain' or a model folder")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = command("attribute", _cmd_attribute, "edge attribution (EAP or EAP-IG) of the default model on a request's forget or retain set")
    _attribution_args(p, default_set="forget")
    p.add_argument("--top", type=int, default=15, help="edges and modules to print")

    p = command("circuit", _cmd_circuit, "select circuits, measure their exact faithfulness on held-out prompts, compare forget and retain, export")
    _attribution_args(p, default_set="both")
    rule = p.add_mutually_exclusive_group()
    rule.add_argument("--top-n", type=int, help="keep the N edges of largest |score| (default 100)")
    rule.add_argument("--threshold", type=float, help="keep edges with |score| at least this")
    rule.add_argument("--share", type=float, help="keep the fewest top edges holding this share of the total |score| (0-1)")
    rule.add_argument("--greedy", type=int, metavar="N", help="grow N edges greedily from the logits")
    p.add_argument("--curve-points", type=int, default=12, help="sizes on the faithfulness curve (0: no curve)")
    p.add_argument("--export", nargs=2, metavar=("FORMAT", "PATH"), help="write the circuit as json, graphml or csv (with --set both, one file per set: PATH gets -forget/-retain/-control-0)")

    p = command("groups", _cmd_groups, "group modules into forget-specific, retain-specific, task-shared and outside, against matched-control noise")
    _attribution_args(p, default_set="forget", corruption_default=None)
    _group_args(p)
    p.add_argument("--csv", metavar="PATH", help="write the module table as CSV")

    p = command("unlearn", _cmd_unlearn, "unlearn a request with one method on a copy of the model; report next to Original and Retrain")
    _unlearn_args(p)
    p.add_argument("--request", default=None, help="request id (default: 5%% of users, seed 0)")
    p.add_argument("--method", required=True, help="ga, graddiff, npo, e2urec, pcgrad, sago, cure, or cure-nocircuit (CURE's rules with every head and MLP task-shared: the ablation)")
    p.add_argument("--strength", type=float, default=None, help="Adam learning rate (default: the middle of the method's sweep grid)")
    p.add_argument("--force", action="store_true", help="recompute even if this run is cached")
    p.add_argument("--json", action="store_true", help="print the report as JSON")

    p = command("compare", _cmd_compare, "run methods over their strength grids; write a Markdown/CSV table and a Plotly HTML Pareto plot")
    _unlearn_args(p)
    p.add_argument("--request", default=None, help="request id (default: 5%% of users, seed 0)")
    p.add_argument("--methods", default="all", help="comma-separated methods or 'all'")
    p.add_argument("--strengths", default=None, help="comma-separated strengths for every method (default: each method's grid)")
    p.add_argument("--out", default="compare", help="output folder (default ./compare)")

    from cure_core.studies import ABOUT

    p = command("study", _cmd_study, "run an evidence study (resumes from the cache): " + "; ".join(f"{name}: {about}" for name, about in ABOUT.items()))
    p.add_argument("name", choices=list(ABOUT))
    p.add_argument("--quick", action="store_true", help="the minutes-long settings used by the tests")
    p.add_argument("--request", default=None, help="pareto/difficulty: default, users:5%%, genre:Horror or a saved request id")
    p.add_argument("--settings-json", default=None, help="override any study setting as JSON, e.g. '{\"seeds\": [0, 1]}'")

    p = command("report", _cmd_report, "write one self-contained HTML report of every study and run in the cache", uses_model=False)
    p.add_argument("--out", default="cure-report.html", help="output file (default ./cure-report.html)")

    p = command("app", _cmd_app, "start the Streamlit app")
    p.add_argument("--port", type=int, default=8501)
    return parser


def _attribution_args(p: argparse.ArgumentParser, default_set: str, corruption_default: str | None = "history") -> None:
    p.add_argument("--request", default=None, help="request id (default: 5%% of users, seed 0)")
    if corruption_default is not None:
        both = " or 'both' (forget and retain, with the matched control draw 0 as noise floor)" if default_set == "both" else ""
        p.add_argument("--set", dest="set_name", default=default_set, help=f"forget, retain, control-N (matched control draw N){both}; default {default_set}")
    p.add_argument("--method", choices=["eap", "eap-ig"], default="eap-ig")
    p.add_argument("--steps", type=int, default=5, help="EAP-IG interpolation steps (default 5)")
    default_note = "default history" if corruption_default else "default: target for item requests, history otherwise"
    p.add_argument("--corruption", choices=["history", "target", "user"], default=corruption_default, help=f"history: another user's history; target: another item; user: the unknown-user token ({default_note})")
    p.add_argument("--metric", choices=["margin", "signed"], default="signed", help="signed (default): logit(Yes) - logit(No) times +1/-1 by label, so clean prompts score high; margin: unsigned")
    p.add_argument("--prompts", type=int, default=512, help="prompts per set for attribution (default 512)")
    p.add_argument("--eval-prompts", type=int, default=256, help="other prompts of the set for faithfulness (default 256)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="recompute even if cached")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _group_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threshold-rule", choices=["share", "quantile", "absolute"], default="share", help="how 'in a set's circuit' is decided (default share)")
    p.add_argument("--threshold", type=float, default=0.8, help="share of importance, quantile, or absolute importance (default 0.8)")
    p.add_argument("--draws", type=int, default=5, help="matched control draws for the noise floor (default 5)")
    p.add_argument("--no-embeddings", action="store_true", help="group heads and MLPs only, not user/item embedding rows")


def _unlearn_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--retain-weight", type=float, default=1.0, help="α, weight of the retain gradient")
    p.add_argument("--retain-loss", choices=["nll", "kl"], default="nll", help="GradDiff and the combining methods: retain NLL or KL to the original")
    p.add_argument("--forget-loss", choices=["npo", "ga", "teacher"], default="npo", help="pcgrad, sago, cure: the forget objective")
    p.add_argument("--retain-rule", choices=["retain_update", "frozen"], default="retain_update", help="cure: what retain-specific modules do")
    p.add_argument("--shared-rule", choices=["pcgrad", "sago"], default="pcgrad", help="cure: how task-shared modules combine g_f and g_r")
    p.add_argument("--row-rule", choices=["update", "reset"], default="update", help="cure: forget-specific embedding rows take the forget update, or are reset to what Retrain reads (<unk_user>)")
    p.add_argument("--corruption", choices=["history", "target", "user"], default=None, help="cure: corruption for the groups (default: target for item requests, history otherwise)")
    p.add_argument("--threshold", type=float, default=0.8, help="cure: group threshold (share of importance)")


def _unlearn_config(args: argparse.Namespace, method: str, strength: float):
    from pydantic import ValidationError

    from cure_core.unlearning.methods import METHODS, UnlearnConfig

    if method not in METHODS:
        raise CureError(f"unknown unlearning method {method!r}", f"use one of: {', '.join(METHODS)}")
    try:
        return UnlearnConfig(
            method=method, strength=strength, steps=args.steps, batch_size=args.batch_size, seed=args.seed, retain_weight=args.retain_weight,
            retain_loss=args.retain_loss, forget_loss=args.forget_loss, retain_rule=args.retain_rule, shared_rule=args.shared_rule, row_rule=args.row_rule,
        )
    except ValidationError as err:
        first = err.errors()[0]
        raise CureError(f"invalid setting {first['loc'][0]}: {first['msg']}", "see `cure unlearn --help`") from None


def _cure_group_inputs(args: argparse.Namespace, request):
    from cure_core.circuits import AttributionSettings
    from cure_core.groups import GroupSettings, default_corruption

    return AttributionSettings(corruption=args.corruption or default_corruption(request)), GroupSettings(threshold=args.threshold)


def _attribution_settings(args: argparse.Namespace):
    from pydantic import ValidationError

    from cure_core.circuits import AttributionSettings

    try:
        return AttributionSettings(
            method=args.method, steps=args.steps, corruption=args.corruption, metric=args.metric, n_prompts=args.prompts, n_eval=args.eval_prompts, batch_size=args.batch_size, seed=args.seed
        )
    except ValidationError as err:
        first = err.errors()[0]
        raise CureError(f"invalid setting {first['loc'][0]}: {first['msg']}", "see `cure attribute --help` for the allowed values") from None


def _circuit_setup(args: argparse.Namespace):
    from cure_core.circuits import circuit_context
    from cure_core.groups import default_corruption
    from cure_core.requests import load_request

    ws = _workspace(args)
    request = load_request(args.request) if args.request else ws.default_request()
    if args.corruption is None:
        args.corruption = default_corruption(request)
    settings = _attribution_settings(args)
    return circuit_context(ws, request), settings


def _cmd_attribute(args: argparse.Namespace) -> None:
    from cure_core.circuits import attribution_path, get_attribution

    ctx, settings = _circuit_setup(args)
    result = get_attribution(ctx, args.set_name, settings, quiet=args.json, force=args.force)
    shape = result.shape
    nodes = sorted(range(shape.n_src), key=lambda i: -abs(result.node_scores[i]))[: args.top]
    if args.json:
        print(json.dumps({
            "request": ctx.request.id, "set": args.set_name, "settings": settings.model_dump(), "n_prompts": result.n_prompts,
            "metric_clean": float(result.metric_clean.mean()), "metric_corrupt": float(result.metric_corrupt.mean()),
            "top_edges": result.top_edges(args.top), "node_scores": {shape.src_names[i]: float(result.node_scores[i]) for i in range(shape.n_src)},
        }, indent=2))
        return
    print(f"request {ctx.request.id} ({ctx.request.description}), {args.set_name} set: {result.n_prompts} prompts, {settings.method}"
          + (f" ({settings.steps} steps)" if settings.method == "eap-ig" else "") + f", corruption {settings.corruption}, metric {settings.metric}")
    print(f"metric mean: clean {result.metric_clean.mean():+.4f}, corrupted {result.metric_corrupt.mean():+.4f} (total effect {result.total_effect:+.4f})")
    print(f"scores: Δ = corrupt − clean; {shape.n_edges} edges. Top {args.top} by |score|:")
    for name, score in result.top_edges(args.top):
        print(f"  {score:+.5f}  {name}")
    print("modules by |node score| (sum of outgoing edges):")
    for i in nodes:
        print(f"  {result.node_scores[i]:+.5f}  {shape.src_names[i]}")
    print(f"cached: {attribution_path(ctx.rec, ctx.request, args.set_name, settings)}")


def _cmd_circuit(args: argparse.Namespace) -> None:
    import numpy as np

    from analysis.compare import differential_nodes, overlap
    from analysis.export import FORMATS, export
    from cure_core.circuits import circuit_document, find_circuit, get_attribution

    if args.export and args.export[0] not in FORMATS:
        raise CureError(f"unknown export format {args.export[0]!r}", f"use one of: {', '.join(FORMATS)}")
    how, value = ("threshold", args.threshold) if args.threshold is not None else ("share", args.share) if args.share is not None else ("greedy", args.greedy) if args.greedy is not None else ("top-n", args.top_n or 100)
    ctx, settings = _circuit_setup(args)
    set_names = ["forget", "retain", "control-0"] if args.set_name == "both" else [args.set_name]
    attributions = {name: get_attribution(ctx, name, settings, quiet=args.json, force=args.force) for name in set_names}
    results = {name: find_circuit(ctx, attributions[name], name, settings, how, value, args.curve_points, quiet=args.json) for name in set_names}
    report: dict[str, Any] = {"request": ctx.request.id, "settings": settings.model_dump(), "selection": {"rule": how, "value": value}, "sets": {}}
    for name, res in results.items():
        report["sets"][name] = {
            "prompts": attributions[name].n_prompts, "edges": res.circuit.n_edges, "nodes": len(res.circuit.nodes()), "faithfulness": res.faithfulness.value,
            "metric_clean": res.faithfulness.metric_clean, "metric_corrupt": res.faithfulness.metric_corrupt, "metric_circuit": res.faithfulness.metric_circuit,
            "curve": [{"top_n": n, "edges_after_pruning": f.n_edges, "faithfulness": f.value} for n, f in res.curve],
        }
    if args.set_name == "both":
        shape = attributions["forget"].shape
        diff = differential_nodes(attributions["forget"], attributions["retain"])
        floor = differential_nodes(attributions["control-0"], attributions["retain"])
        report["overlap"] = {"forget_vs_retain": overlap(results["forget"].circuit, results["retain"].circuit), "control_vs_retain": overlap(results["control-0"].circuit, results["retain"].circuit)}
        report["differential_nodes"] = {shape.src_names[i]: {"forget_minus_retain": float(diff[i]), "control_minus_retain": float(floor[i])} for i in np.argsort(-np.abs(diff))}
    exported = []
    if args.export:
        fmt, path = args.export[0], Path(args.export[1])
        for name, res in results.items():
            target = path if len(results) == 1 else path.with_name(f"{path.stem}-{name}{path.suffix}")
            export(circuit_document(res, attributions, settings, how, value), fmt, target)
            exported.append(str(target))
        report["exported"] = exported
    if args.json:
        print(json.dumps(_jsonable(report), indent=2))
        return
    print(f"request {ctx.request.id}; {settings.method}, corruption {settings.corruption}; selection {how} {value}; faithfulness on {settings.n_eval} held-out prompts per set")
    for name, row in report["sets"].items():
        print(f"{name:>7} circuit: {row['edges']} edges, {row['nodes']} nodes, F = {row['faithfulness']:.3f}  (m clean {row['metric_clean']:+.4f}, corrupt {row['metric_corrupt']:+.4f}, circuit {row['metric_circuit']:+.4f})")
        print("         curve (top-n → edges after pruning: F): " + ", ".join(f"{c['top_n']}→{c['edges_after_pruning']}: {c['faithfulness']:.2f}" for c in row["curve"]))
    if "overlap" in report:
        for pair, label in (("forget_vs_retain", "forget vs retain"), ("control_vs_retain", "control vs retain (noise floor)")):
            o = report["overlap"][pair]
            print(f"overlap {label:<32} edges Jaccard {o['edges_jaccard']:.3f}, nodes Jaccard {o['nodes_jaccard']:.3f}")
        top = list(report["differential_nodes"].items())[:8]
        print("normalised node score, forget − retain [control − retain]: " + ", ".join(f"{k} {v['forget_minus_retain']:+.4f} [{v['control_minus_retain']:+.4f}]" for k, v in top))
    for target in exported:
        print(f"exported: {target}")


def _cmd_groups(args: argparse.Namespace) -> None:
    from pydantic import ValidationError

    from cure_core.groups import GroupSettings, groups_for_request

    ctx, settings = _circuit_setup(args)
    try:
        group_settings = GroupSettings(threshold_rule=args.threshold_rule, threshold=args.threshold, null_draws=args.draws, embedding_rows=not args.no_embeddings)
    except ValidationError as err:
        first = err.errors()[0]
        raise CureError(f"invalid setting {first['loc'][0]}: {first['msg']}", "see `cure groups --help`") from None
    groups = groups_for_request(ctx, settings, group_settings, quiet=args.json)
    if args.csv:
        from cure_core.cache import atomic_write_bytes

        atomic_write_bytes(Path(args.csv), groups.table.to_csv(index=False).encode())
    if args.json:
        print(json.dumps(_jsonable({"request": ctx.request.id, "settings": {**settings.model_dump(), **group_settings.model_dump()}, "separability": groups.separability,
                                    "sizes": groups.sizes().to_dict(), "modules": groups.table.to_dict(orient="records"), "warnings": groups.warnings}), indent=2, default=str))
        return
    sep = groups.separability
    print(f"request {ctx.request.id} ({ctx.request.description}); {settings.method}, corruption {settings.corruption}, {sep['control_draws']} matched control draws")
    print(f"separability: log-ratio spread forget {sep['spread_forget']:.3f} vs control {sep['spread_control_mean']:.3f} ± {sep['spread_control_std']:.3f}"
          f" → ratio {sep['separability']:.2f} ({'beyond' if sep['separability'] > 1 + 2 * sep['spread_control_std'] / max(sep['spread_control_mean'], 1e-12) else 'within'} noise); "
          f"{sep['significant_modules']} heads/MLPs beyond their null")
    table = groups.table[groups.table["kind"].isin(["head", "mlp"])]
    print(table[["module", "importance_forget", "importance_retain", "difference", "null", "significant", "group"]].to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    rows = groups.table[~groups.table["kind"].isin(["head", "mlp"])]
    if len(rows):
        print(f"embedding rows: {len(rows)} forget-specific ({', '.join(rows['module'].head(8))}{' …' if len(rows) > 8 else ''})")
    print("group sizes by kind (module kinds used: " + ", ".join(groups.kinds) + "):")
    print(groups.sizes().to_string())
    for note in groups.warnings:
        print(f"warning: {note}")
    if args.csv:
        print(f"written: {args.csv}")


def _print_versus_retrain(report: dict[str, Any], name: str, rows: list[tuple[str, str, str]]) -> None:
    """A model's metrics next to Retrain's, MIA with PrivLeak, and the distances to Retrain."""
    print(f"{'':>22}{name:>12}{'Retrain':>12}")
    for label, split, key in rows:
        print(f"{label:>22}{report['model'][split][key]:>12.4f}{report['retrain'][split][key]:>12.4f}")
    for attack, auc in report["model"].get("mia", {}).items():
        print(f"{'MIA AUC ' + attack:>22}{auc:>12.4f}{report['retrain']['mia'][attack]:>12.4f}   PrivLeak {report['privleak'].get(attack, float('nan')):+.1f}%")
    print(f"{'JSD to Retrain':>22}{report['jsd_to_retrain']:>12.5f}")
    print(f"{'L2 to Retrain':>22}{report['l2_to_retrain']:>12.5f}")


def _print_run(report: dict[str, Any]) -> None:
    print(f"run {report['run']}: {report['method']} strength {report['strength']:g}, {report['seconds']:.1f}s, {report['params_updated']:,} of {report['params_total']:,} parameters updated, peak {report['peak_memory_mib']:.0f} MiB ({report['peak_memory_kind']})")
    rows = [("test AUC", "test", "auc"), ("test ACC", "test", "acc"), ("test LogLoss", "test", "logloss"), ("forget AUC", "forget", "auc"), ("forget ACC", "forget", "acc")]
    _print_versus_retrain(report, report["method"], rows)
    for note in report.get("group_warnings", []):
        print(f"warning: {note}")


def _cmd_unlearn(args: argparse.Namespace) -> None:
    from cure_core.requests import load_request
    from cure_core.unlearning.methods import METHODS
    from cure_core.unlearning.runs import get_run

    ws = _workspace(args)
    request = load_request(args.request) if args.request else ws.default_request()
    default = METHODS[args.method].default_strength if args.method in METHODS else 1e-4
    config = _unlearn_config(args, args.method, args.strength if args.strength is not None else default)
    attribution, group_settings = _cure_group_inputs(args, request)
    report = get_run(ws, request, config, attribution, group_settings, quiet=args.json, force=args.force).model_dump()
    if args.json:
        print(json.dumps(_jsonable(report), indent=2, default=str))
        return
    _print_run(report)


def _cmd_compare(args: argparse.Namespace) -> None:
    from cure_core.requests import load_request
    from cure_core.unlearning.compare import comparison_table, pareto_figure, reference_rows
    from cure_core.unlearning.methods import METHODS
    from cure_core.unlearning.runs import get_run

    ws = _workspace(args)
    request = load_request(args.request) if args.request else ws.default_request()
    methods = list(METHODS) if args.methods == "all" else _split_list(args.methods)
    strengths = [float(x) for x in _split_list(args.strengths)] if args.strengths else None
    attribution, group_settings = _cure_group_inputs(args, request)
    reports = []
    for method in methods:
        for strength in strengths or (METHODS[method].strengths if method in METHODS else [1e-4]):
            config = _unlearn_config(args, method, strength)
            report = get_run(ws, request, config, attribution, group_settings)
            reports.append(report)
            print(f"{method:>9} strength {strength:<8g} test AUC {report.test_auc:.4f}  forget AUC {report.forget_auc:.4f}  JSD {report.jsd_to_retrain:.5f}  {report.seconds:.1f}s")
    refs = reference_rows(ws, request)
    table = comparison_table(reports, refs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from cure_core.cache import atomic_write_bytes

    atomic_write_bytes(out / "comparison.csv", table.to_csv(index=False).encode())
    atomic_write_bytes(out / "comparison.md", table.to_markdown(index=False, floatfmt=".4g").encode())
    fig = pareto_figure(reports, refs, f"Forget/retain trade-off on {request.id} ({request.description})")
    atomic_write_bytes(out / "pareto.html", fig.to_html(include_plotlyjs=True, full_html=True).encode())
    print(table.to_markdown(index=False, floatfmt=".4g"))
    print(f"written: {out / 'comparison.md'}, {out / 'comparison.csv'}, {out / 'pareto.html'}")


def _workspace(args: argparse.Namespace) -> Workspace:
    from cure_core.data import SplitConfig
    from cure_core.model.recipe import recipe_from_json
    from cure_core.workspace import Workspace

    recipe = recipe_from_json(getattr(args, "recipe_json", None))
    split = SplitConfig.model_validate_json(args.split_json) if getattr(args, "split_json", None) else None
    return Workspace(data=args.data, split=split, recipe=recipe)


def _cmd_data(args: argparse.Namespace) -> None:
    ws = _workspace(args)
    for key, value in ws.summary().items():
        print(f"{key:>24}: {value}")
    print(f"{'user ids':>24}: {ws.samples.user_ids[0]} .. {ws.samples.user_ids[-1]}")
    print(f"{'genres':>24}: {', '.join(ws.dataset.genres)}")


def _cmd_train(args: argparse.Namespace) -> None:
    from cure_core.baselines import baseline_aucs
    from cure_core.requests import load_request

    ws = _workspace(args)
    request = load_request(args.retrain) if args.retrain else None
    role = "retrain" if request else "original"
    rec = None if args.force else ws.load_model(role, request)
    if rec is None:
        progress = _progress_file_writer(Path(args.progress_file)) if args.progress_file else None
        rec = ws.train_model(role, request, threads=args.threads, progress=progress)
    else:
        print(f"cached: {rec.path}")
    meta = rec.meta
    print(f"model: {rec.path}")
    print(f"parameters: {meta['n_params']:,}  training: {meta['train_seconds']:.0f}s on {meta['threads']} thread(s), best epoch {meta['best_epoch']}")
    print("curve (AUC against training time; the checkpoint is the best validation epoch):")
    for row in meta["curve"]:
        print(f"  epoch {row['epoch']:>2}  {row['seconds']:>6.0f}s  loss {row['train_loss']:.4f}  valid AUC {row['valid_auc']:.4f}  test AUC {row['test_auc']:.4f}")
    sets = ws.train_sets(role, request)
    print(f"test AUC {meta['metrics']['test_auc']:.4f}  ACC {meta['metrics']['test_acc']:.4f}  LogLoss {meta['metrics']['test_logloss']:.4f}")
    for name, auc in baseline_aucs(ws.samples, sets.train, sets.test).items():
        print(f"  baseline {name:<26} test AUC {auc:.4f}")


def _cmd_forget(args: argparse.Namespace) -> None:
    from cure_core.requests import interaction_request, item_request, parse_share, save_request, user_request

    ws = _workspace(args)
    if args.user_ids:
        request = user_request(ws.dataset, ws.samples, user_ids=_split_list(args.user_ids))
    elif args.genre:
        request = item_request(ws.dataset, ws.samples, genre=args.genre, scope=args.scope)
    elif args.items:
        request = item_request(ws.dataset, ws.samples, item_ids=_split_list(args.items), scope=args.scope)
    elif args.interactions:
        pairs = []
        for pair in _split_list(args.interactions):
            if pair.count(":") != 1:
                raise CureError(f"interaction {pair!r} is not USER:ITEM", "write ratings as USER:ITEM, e.g. 196:242")
            user, item = pair.split(":")
            pairs.append((user, item))
        request = interaction_request(ws.dataset, ws.samples, pairs)
    else:
        request = user_request(ws.dataset, ws.samples, fraction=parse_share(args.users or "5%", "--users"), seed=args.seed)
    sets = ws.sets(request)
    save_request(request)
    print(f"request {request.id}: {request.kind}-level, {request.description}")
    for name, size in sets.sizes().items():
        print(f"  {name:>8}: {size:>6} samples")
    print(f"next: cure train --retrain {request.id}   |   cure evaluate --request {request.id}")


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from cure_core.evaluate import compare_to_retrain
    from cure_core.model.store import load_recommender
    from cure_core.requests import load_request

    ws = _workspace(args)
    request = load_request(args.request) if args.request else ws.default_request()
    original, retrain = ws.ensure_models(request, quiet=args.json)
    if args.model == "original":
        rec = original
    elif args.model == "retrain":
        rec = retrain
    else:
        rec = load_recommender(Path(args.model), ws.samples, ws.titles)
    report = compare_to_retrain(rec, retrain, request, ws.samples, ws.sets(request), name=args.model).model_dump()
    if args.json:
        print(json.dumps(_jsonable(report), indent=2))
        return
    print(f"request {request.id} ({request.description}); sets: {report['sizes']}")
    rows = [("test AUC", "test", "auc"), ("test LogLoss", "test", "logloss"), ("forget AUC", "forget", "auc"), ("forget ACC", "forget", "acc"), ("forget LogLoss", "forget", "logloss"), ("retain AUC", "retain", "auc")]
    _print_versus_retrain(report, args.model, rows)


def _cmd_study(args: argparse.Namespace) -> None:
    from pydantic import ValidationError

    from cure_core.studies.registry import STUDIES
    from cure_core.studies.store import study_folder

    study = STUDIES[args.name]
    settings = study.settings.quick() if args.quick else study.settings()
    update = json.loads(args.settings_json) if args.settings_json else {}
    if args.request:
        if "request" not in study.settings.model_fields:
            raise CureError(f"the {args.name} study takes no --request", "leave it out; see `cure study --help`")
        update["request"] = args.request
    try:
        settings = study.settings.model_validate({**settings.model_dump(), **update})
    except ValidationError as err:
        raise CureError(f"invalid {args.name} settings: {err.errors()[0]['loc']}: {err.errors()[0]['msg']}", f"valid fields: {', '.join(study.settings.model_fields)}") from None
    result = study.run(_workspace(args), settings)
    print(f"\n# {args.name} ({result['seconds']:.0f} s now, {result['total_seconds']:.0f} s over {len(result['invocations'])} invocation(s))")
    for line in result["summary"]:
        print(f"- {line}")
    print(f"saved: {study_folder(args.name, result['key']) / 'result.json'} — see it in the app's Report page or with `cure report`")


def _cmd_report(args: argparse.Namespace) -> None:
    from cure_core.studies.report import write_report

    print(f"written: {write_report(Path(args.out))}")


def _cmd_app(args: argparse.Namespace) -> int:
    from cure_core.model.recipe import recipe_from_json

    recipe_from_json(args.recipe_json)  # refuse a bad recipe here rather than in the page
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP_ENTRY), "--server.port", str(args.port), "--browser.gatherUsageStats", "false"]
    env = dict(os.environ, **({"CURE_DATA": args.data} if args.data else {}), **({"CURE_RECIPE": args.recipe_json} if args.recipe_json else {}))
    return subprocess.call(cmd, env=env)


def _progress_file_writer(path: Path) -> ProgressFn:
    """Write progress as JSON (atomically, at most twice a second) for a parent process to poll."""
    from cure_core.cache import atomic_write_json

    last = [0.0]

    def write(done: int, total: int, info: dict[str, Any]) -> None:
        now = time.monotonic()
        if now - last[0] > 0.5 or done == total:
            last[0] = now
            atomic_write_json(path, {"done": done, "total": total, "info": info})

    return write


def _split_list(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item"):
        return obj.item()
    return obj


if __name__ == "__main__":
    sys.exit(main())
