"""Plain-text printing of what the commands computed (``--json`` prints the dicts instead).

The report dicts come from ``cure_core.evaluate`` and ``cure_core.unlearning``; this module is
the only place in the CLI that knows their keys.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from analysis.attribution import Attribution
    from cure_core.circuits import AttributionSettings
    from cure_core.comparison import Comparison
    from cure_core.data.samples import Samples
    from cure_core.groups import ModuleGroups
    from cure_core.model.recommender import Recommender
    from cure_core.model_source import ModelSource
    from cure_core.requests import ForgetRequest
    from cure_core.unlearning.runs import RunReport


def print_json(obj: Any) -> None:
    """One JSON document; pydantic results (a Comparison, a RunReport) as their ``model_dump``."""
    if hasattr(obj, "model_dump"):
        obj = obj.model_dump(mode="json")
    print(json.dumps(jsonable(obj), indent=2, default=str))


def jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "item"):
        return obj.item()
    return obj


def print_summary(summary: dict[str, object], user_ids: list[str], genres: list[str]) -> None:
    for key, value in summary.items():
        print(f"{key:>24}: {value}")
    print(f"{'user ids':>24}: {user_ids[0]} .. {user_ids[-1]}")
    print(f"{'genres':>24}: {', '.join(genres)}")


def print_model(rec: Recommender, baselines: dict[str, float]) -> None:
    from cure_core.model.card import Metrics

    card = rec.card
    curve, metrics = card.curve or [], card.metrics or Metrics()
    by_step = bool(curve) and "step" in curve[0]  # the text model checks every N steps
    best = f"best check at epoch {card.best_epoch:.2f}" if by_step else f"best epoch {card.best_epoch}"
    print(f"model: {rec.path}")
    print(f"parameters: {card.n_params:,}  training: {card.train_seconds:.0f}s on {card.threads} thread(s), {best}")
    print("curve (AUC against training time; the checkpoint is the best validation check):")
    for row in curve:
        when = f"step {row['step']:>5} (epoch {row['epoch']:.2f})" if by_step else f"epoch {row['epoch']:>2}"
        print(
            f"  {when}  {row['seconds']:>6.0f}s  loss {row['train_loss']:.4f}  valid AUC "
            f"{row['valid_auc']:.4f}  test AUC {row['test_auc']:.4f}"
        )
    print(f"test AUC {metrics.test_auc:.4f}  ACC {metrics.test_acc:.4f}  LogLoss {metrics.test_logloss:.4f}")
    for name, auc in baselines.items():
        print(f"  baseline {name:<26} test AUC {auc:.4f}")


def print_request(request: ForgetRequest, sizes: dict[str, int], trains_here: bool = True) -> None:
    print(f"request {request.id}: {request.kind}-level, {request.description}")
    for name, size in sizes.items():
        print(f"  {name:>8}: {size:>6} samples")
    if not trains_here:
        print(
            f"next: cure evaluate --request {request.id} --model ...   |   cure circuit --request {request.id} --model ..."
        )
    else:
        print(f"next: cure train --retrain {request.id}   |   cure evaluate --request {request.id}")


def print_prompt(rec: Recommender, samples: Samples, i: int) -> None:
    """One sample's prompt as the model reads it, its length in tokens and the model's score."""
    batch = rec.encode(samples, np.array([i]))
    n_tokens = int(batch.input_ids.shape[1])
    margin = float(rec.predict(samples, np.array([i])).margin[0])
    label = "like" if samples.label[i] else "dislike"
    print(f"first forget prompt ({n_tokens} tokens; true answer: {label}; model margin yes − no {margin:+.3f}):")
    print(rec.encoder.prompt(samples, i))  # type: ignore[attr-defined]


def print_versus_retrain(report: Comparison, labels: list[str], original: Comparison | None = None) -> None:
    """A model's metrics (and ``original``'s, when given) next to Retrain's, MIA with PrivLeak,
    the distances to Retrain, and which Retrain that is."""
    extra = original is not None and original is not report
    print(f"{'':>22}{report.name:>12}" + (f"{'Original':>12}" if extra else "") + f"{'Retrain':>12}")
    before = dict((label, value) for label, value, _ in original.versus(labels, mia=False)) if extra else {}
    for label, value, retrain in report.versus(labels, mia=False):
        middle = f"{_number(before.get(label)):>12}" if extra else ""
        print(f"{label:>22}{_number(value):>12}{middle}{_number(retrain):>12}")
    for attack, auc in report.model.mia.items():
        leak = report.privleak.get(attack)
        middle = f"{_number(original.model.mia.get(attack)):>12}" if extra else ""  # type: ignore[union-attr]
        print(
            f"{'MIA AUC ' + attack:>22}{_number(auc):>12}{middle}{_number(report.reference.mia.get(attack)):>12}   "
            + (f"PrivLeak {leak:+.1f}%" if leak is not None else "PrivLeak n/a")
        )
    if report.retrain_unavailable:
        print(f"Retrain: unavailable — {report.retrain_unavailable}")
        return
    print(f"{'JSD to Retrain':>22}{report.jsd_to_retrain:>12.5f}")
    print(f"{'L2 to Retrain':>22}{report.l2_to_retrain:>12.5f}")
    if report.retrain_model is not None:
        print(f"Retrain: {report.retrain_model['path']} (weights {report.retrain_model['fingerprint'][:12]})")


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def print_evaluation(report: Comparison, request: ForgetRequest) -> None:
    print(f"request {request.id} ({request.description}); sets: {report.sizes}")
    if report.evaluated:
        print(f"scored (seeded draws where smaller than the set; forget whole): {report.evaluated}")
    print_versus_retrain(
        report, ["test AUC", "test LogLoss", "forget AUC", "forget ACC", "forget LogLoss", "retain AUC"]
    )


def run_setting(report: RunReport) -> str:
    """The model a run worked on, its mode (full or LoRA) and the parameters it could train."""
    trainable = f"{report.trainable_params:,}" if report.trainable_params is not None else "n/a"
    return (
        f"model: {report.model_label or 'Item model (trained here)'}; mode: {report.mode_label}; "
        f"trainable parameters: {trainable}"
    )


def print_run(report: RunReport, original: Comparison | None = None) -> None:
    print(
        f"run {report.run}: {report.method} strength {report.strength:g}, {report.seconds:.1f}s, "
        f"{report.params_updated:,} of {report.params_total:,} parameters updated, peak "
        f"{report.peak_memory_mib:.0f} MiB ({report.peak_memory_kind})"
    )
    print(run_setting(report))
    print_versus_retrain(report, ["test AUC", "test ACC", "test LogLoss", "forget AUC", "forget ACC"], original)
    for note in report.group_warnings:
        print(f"warning: {note}")


def print_grid_row(report: RunReport) -> None:
    jsd = f"{report.jsd_to_retrain:.5f}" if report.jsd_to_retrain is not None else "unavailable (no Retrain)"
    print(
        f"{report.method:>9} strength {report.strength:<8g} test AUC {_number(report.test_auc)}  forget AUC "
        f"{_number(report.forget_auc)}  JSD {jsd}  {report.seconds:.1f}s"
    )


def print_comparison(table: str, reports: list[RunReport]) -> None:
    """The comparison table under the model, mode and trainable parameters of its runs, and
    why the Retrain columns are empty when they are."""
    for setting in dict.fromkeys(run_setting(r) for r in reports):
        print(setting)
    print(table)
    unavailable = next((r.retrain_unavailable for r in reports if r.retrain_unavailable), None)
    if unavailable:
        print(f"Retrain: unavailable — {unavailable}")


def print_attribution(
    result: Attribution, request: ForgetRequest, set_name: str, settings: AttributionSettings, top: int, cached: str
) -> None:
    shape = result.shape
    print(
        f"request {request.id} ({request.description}), {set_name} set: {result.n_prompts} prompts, {settings.method}"
        + (f" ({settings.steps} steps)" if settings.method == "eap-ig" else "")
        + f", corruption {settings.corruption}, metric {settings.metric}"
    )
    print(
        f"metric mean: clean {result.metric_clean.mean():+.4f}, corrupted "
        f"{result.metric_corrupt.mean():+.4f} (total effect {result.total_effect:+.4f})"
    )
    print(f"scores: Δ = corrupt − clean; {shape.n_edges} edges. Top {top} by |score|:")
    for name, score in result.top_edges(top):
        print(f"  {score:+.5f}  {name}")
    print("modules by |node score| (sum of outgoing edges):")
    for i in sorted(range(shape.n_src), key=lambda i: -abs(result.node_scores[i]))[:top]:
        print(f"  {result.node_scores[i]:+.5f}  {shape.src_names[i]}")
    print(f"cached: {cached}")


def print_circuits(report: dict[str, Any], settings: AttributionSettings) -> None:
    selection = report["selection"]
    print(
        f"request {report['request']}; {settings.method}, corruption {settings.corruption}; selection "
        f"{selection['rule']} {selection['value']}; faithfulness on {settings.n_eval} held-out prompts per "
        "set"
    )
    for name, row in report["sets"].items():
        print(
            f"{name:>7} circuit: {row['edges']} edges, {row['nodes']} nodes, F = {row['faithfulness']:.3f}  "
            f"(m clean {row['metric_clean']:+.4f}, corrupt {row['metric_corrupt']:+.4f}, circuit "
            f"{row['metric_circuit']:+.4f})"
        )
        print(
            "         curve (top-n → edges after pruning: F): "
            + ", ".join(f"{c['top_n']}→{c['edges_after_pruning']}: {c['faithfulness']:.2f}" for c in row["curve"])
        )
    if "overlap" in report:
        for pair, label in (
            ("forget_vs_retain", "forget vs retain"),
            ("control_vs_retain", "control vs retain (noise floor)"),
        ):
            o = report["overlap"][pair]
            print(f"overlap {label:<32} edges Jaccard {o['edges_jaccard']:.3f}, nodes Jaccard {o['nodes_jaccard']:.3f}")
        top = list(report["differential_nodes"].items())[:8]
        print(
            "normalised node score, forget − retain [control − retain]: "
            + ", ".join(f"{k} {v['forget_minus_retain']:+.4f} [{v['control_minus_retain']:+.4f}]" for k, v in top)
        )
    for target in report.get("exported", []):
        print(f"exported: {target}")


def print_groups(groups: ModuleGroups, request: ForgetRequest, settings: AttributionSettings) -> None:
    from cure_core.groups import CIRCUIT_KINDS, EMBEDDING_KINDS

    sep = groups.separability
    print(
        f"request {request.id} ({request.description}); {settings.method}, corruption "
        f"{settings.corruption}, {sep['control_draws']} matched control draws"
    )
    print(
        f"separability: log-ratio spread forget {sep['spread_forget']:.3f} vs control "
        f"{sep['spread_control_mean']:.3f} ± {sep['spread_control_std']:.3f}"
        f" → ratio {sep['separability']:.2f} ({'beyond' if groups.beyond_noise else 'within'} noise); "
        f"{sep['significant_modules']} heads/MLPs beyond their null"
    )
    weighted = groups.beyond_noise_weighted
    if weighted is None:
        print("importance-weighted separability: — (not in these groups; rerun `cure groups` to compute it)")
    else:
        print(
            "importance-weighted (module weight (I_f + I_r)/2, control (I_c + I_r)/2): spread forget "
            f"{sep['spread_forget_weighted']:.3f} vs control {sep['spread_control_mean_weighted']:.3f} ± "
            f"{sep['spread_control_std_weighted']:.3f} → ratio {sep['separability_weighted']:.2f} "
            f"({'beyond' if weighted else 'within'} noise)"
        )
    table = groups.table[groups.table["kind"].isin(CIRCUIT_KINDS)]
    print(
        table[
            ["module", "importance_forget", "importance_retain", "difference", "null", "significant", "group"]
        ].to_string(index=False, float_format=lambda x: f"{x:.4f}")
    )
    rows = groups.table[groups.table["kind"].isin(EMBEDDING_KINDS)]
    if len(rows):
        print(
            f"embedding rows: {len(rows)} forget-specific "
            f"({', '.join(rows['module'].head(8))}{' …' if len(rows) > 8 else ''})"
        )
    print("group sizes by kind (module kinds used: " + ", ".join(groups.kinds) + "):")
    print(groups.sizes().to_string())
    for note in groups.warnings:
        print(f"warning: {note}")


def print_model_card(source: ModelSource, rec: Recommender) -> None:
    """What was loaded: architecture, size, dtype, device, adapter, profile, Retrain."""
    info = rec.card.checkpoint
    if info is None:
        raise ValueError("print_model_card prints a checkpoint's card")
    adapter = info.adapter
    heads = f"{info.n_heads} heads" + (
        f" ({info.n_kv_heads} key/value heads)" if info.n_kv_heads != info.n_heads else ""
    )
    print(
        f"model {info.path}: {info.architecture}, {info.n_params:,} parameters, {info.n_layers} layers, "
        f"{heads}, {info.dtype} on {info.device}"
    )
    if adapter:
        print(f"  adapter {adapter.path} (LoRA rank {adapter.r} on {', '.join(adapter.target_modules)}) merged")
    print(f"  profile {rec.card.profile}; answers {rec.encoder.yes_id} / {rec.encoder.no_id} (yes / no token ids)")
    if not source.has_retrain:
        print("  Retrain: none given (--retrain-model / --retrain-adapter); metrics against Retrain are unavailable")
