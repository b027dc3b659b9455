"""Unlearning on ML-100K: Retrain and every method at its best strength, on two requests.

Requests: the default (5% of users, seed 0) and a genre-level one (every sample whose target is
a Children's movie). For each method variant, every strength of its grid is run (seed 0,
cached under ``cache/runs``) and one is **chosen without the test set**: the forget set is split
in two halves (by user for a user request, by sample otherwise); the chosen strength has the
lowest JSD to Retrain on the *selection* half among those whose validation AUC drops by at most
0.01 (else the smallest drop). The tables report the other, *report* half's JSD and the test
metrics of the chosen run. CURE-style variants are chosen the same way, and the best of them
by the same criterion stands for CURE in the final lines. The times of CURE-style and of its
no-circuit ablation include computing the module groups (attributions on forget, retain and 5
control sets, recomputed here). The speed-up
compares with Retrain's training time on the same number of threads (when Retrain was trained on
fewer, beside Original, Original's time on the same threads stands in: same recipe, more data).
The variants (`cure_core/studies/variants.py`) and the selection rule (`selection.py`) are the studies'.

    .venv/bin/python benchmarks/unlearning.py                     # the item model, full-parameter
    .venv/bin/python benchmarks/unlearning.py --recipe text       # the text model: LoRA, then full
    .venv/bin/python benchmarks/unlearning.py --recipe text --mode lora --variants NPO E2URec-style \
        "CURE (teacher)" "No circuits (teacher, reset rows)"        # a subset (the final lines say so)

Ends with ``cure_jsd_to_retrain=``, ``best_baseline_jsd_to_retrain=``, ``cure_test_auc_drop=``,
``cure_speedup_vs_retrain=``, ``cure_mia_auc_minus_retrain=`` (default request), once per mode
(``--mode``; the text model runs LoRA r=8 and full-parameter unlearning by default), each block
headed by the model and mode. On the text model a reset-rows variant is its plain counterpart
(no embedding rows: ``cure_core.studies.variants.Variant.without_rows``).
"""

from __future__ import annotations

import argparse
from typing import Any

import pandas as pd
import torch

from cure_core.circuits import AttributionSettings
from cure_core.evaluate import reference_comparison
from cure_core.groups import GroupSettings, default_corruption
from cure_core.metrics import jsd
from cure_core.model.recipe import recipe_from_json
from cure_core.requests import item_request, save_request
from cure_core.studies.common import grouping_seconds
from cure_core.studies.selection import Selector, choose
from cure_core.studies.variants import VARIANTS, is_cure_style, variants_for
from cure_core.unlearning.runs import get_run
from cure_core.workspace import Workspace


def study(ws: Workspace, request, lora: dict[str, Any], labels: list[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The variants of ``labels``, each at its chosen strength on ``request`` (``lora``: the LoRA
    fields of each run's config, empty for full-parameter unlearning), next to Original and Retrain."""
    original, retrain = ws.models.ensure_models(request)
    sets = ws.data.sets(request)
    selector = Selector(ws, request, original, retrain)
    report_idx, ref_report = selector.report_idx, selector.ref_report
    attribution = AttributionSettings(corruption=default_corruption(request))
    groups_seconds = grouping_seconds(ws, request, GroupSettings())
    rows = []
    for v in variants_for(labels, ws.models.backend.capabilities.embedding_rows):
        chosen = choose(
            [
                selector.score(
                    get_run(ws, request, v.config(strength, **lora), attribution, GroupSettings(), quiet=True)
                )
                for strength in v.grid(lora=bool(lora))
            ]
        )
        report = chosen.report
        seconds = report.seconds + (groups_seconds if v.needs_groups else 0.0)
        rows.append(
            {
                "method": v.label,
                "strength": report.strength,
                "JSD select half": chosen.select_jsd,
                "JSD report half": chosen.report_jsd,
                "valid AUC drop": chosen.valid_drop,
                "test AUC": report.test_auc,
                "forget AUC": report.forget_auc,
                "MIA AUC": report.mia_auc,
                "seconds": seconds,
                "params updated": report.params_updated,
                "trainable": report.params_total,
            }
        )
    base = reference_comparison(original, retrain, request, ws.data.samples, sets)
    references = [
        {
            "method": "Original",
            "JSD report half": jsd(original.predict(ws.data.samples, report_idx), ref_report),
            "test AUC": base.test_auc,
            "forget AUC": base.forget_auc,
            "MIA AUC": base.mia_auc,
            "seconds": original.card.train_seconds,
        },
        {
            "method": "Retrain",
            "JSD report half": 0.0,
            "test AUC": base.retrain_test_auc,
            "forget AUC": base.retrain_forget_auc,
            "MIA AUC": base.retrain_mia_auc,
            "seconds": retrain.card.train_seconds,
        },
    ]
    table = pd.DataFrame(references + rows)
    threads = torch.get_num_threads()
    if retrain.card.threads == threads:
        reference, note = retrain.card.train_seconds, f"Retrain itself, trained on {threads} threads"
    else:  # e.g. trained beside Original on one thread each: compare like with like instead
        reference = original.card.train_seconds
        note = (
            f"Retrain was trained on {retrain.card.threads} thread(s) "
            f"({retrain.card.train_seconds:.0f}s); used instead: the same recipe on the full training set, "
            f"{original.card.threads} threads"
        )
    return table, {
        "base": base,
        "retrain_seconds": retrain.card.train_seconds,
        "groups_seconds": groups_seconds,
        "reference_seconds": reference,
        "reference_note": note,
    }


MODES = {"full": {}, "lora": {"lora": True, "lora_rank": 8}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", choices=("item", "text"), default="item", help="the model trained here")
    parser.add_argument(
        "--mode", choices=(*MODES, "both"), default=None, help="full-parameter, LoRA r=8, or both (text default)"
    )
    parser.add_argument("--no-genre", action="store_true", help="only the default request (not the Children's one)")
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=[v.label for v in VARIANTS],
        default=[v.label for v in VARIANTS],
        help="variant labels, each quoted (default: all; the final lines compare only those run)",
    )
    args = parser.parse_args()
    if {is_cure_style(label) for label in args.variants} != {True, False}:
        parser.error("--variants needs a CURE-style variant and a baseline: the final lines compare the two")
    ws = Workspace.open(recipe=recipe_from_json(None, args.recipe))
    mode = args.mode or ("both" if args.recipe == "text" else "full")
    default = ws.data.default_request()
    requests = [default]
    if not args.no_genre:
        childrens = item_request(ws.data.dataset, ws.data.samples, genre="Children's", scope="target")
        save_request(childrens)
        requests.append(childrens)
    for name in MODES if mode == "both" else (mode,):
        results = {}
        for request in requests:
            table, info = study(ws, request, MODES[name], args.variants)
            results[request.id] = (table, info)
            print(
                f"\n## {args.recipe} model, {name}: {request.id}: {request.description} (groups computed in "
                f"{info['groups_seconds']:.0f}s; Retrain trained in {info['retrain_seconds']:.0f}s)"
            )
            print(table.to_markdown(index=False, floatfmt=".4g"))
        print(f"\n# {args.recipe} model, {name}{' r=8' if name == 'lora' else ''}: default request")
        final_lines(*results[default.id])


def final_lines(table: pd.DataFrame, info: dict[str, Any]) -> None:
    methods = table.iloc[2:]
    cure = methods[methods["method"].map(is_cure_style)].sort_values("JSD select half").iloc[0]
    baselines = methods[~methods["method"].map(is_cure_style)].sort_values("JSD select half")
    best = baselines.iloc[0]
    original_test = table.iloc[0]["test AUC"]
    retrain_mia = table.iloc[1]["MIA AUC"]
    print(
        f"CURE stands for: {cure['method']} (strength {cure['strength']:g}); best baseline by the same "
        f"criterion: {best['method']} (strength {best['strength']:g}), among the {len(methods)} variants run: "
        f"{', '.join(methods['method'])}"
    )
    print(f"cure_jsd_to_retrain={cure['JSD report half']:.5f}")
    print(f"best_baseline_jsd_to_retrain={best['JSD report half']:.5f}")
    print(f"cure_test_auc_drop={original_test - cure['test AUC']:.4f}")
    print(
        f"speed-up reference: {info['reference_seconds']:.0f}s — {info['reference_note']}; CURE's "
        f"{cure['seconds']:.1f}s include {info['groups_seconds']:.1f}s of module grouping"
    )
    print(f"cure_speedup_vs_retrain={info['reference_seconds'] / cure['seconds']:.1f}")
    print(f"cure_mia_auc_minus_retrain={cure['MIA AUC'] - retrain_mia:+.4f}")


if __name__ == "__main__":
    main()
