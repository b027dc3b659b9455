"""The ``cure`` argument parser. Options that set a settings field are generated from the
settings class (:class:`~cure_core.cli.options.SettingsOptions`): its ``Literal`` choices,
constraints, defaults and descriptions; a new field or choice there is a new or wider option
here. Only the selected command's options are built, so ``cure --help`` imports no torch.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from cure_core.cli.options import (
    CliParser,
    SettingsOptions,
    bounded,
    group_options,
    help_text,
    memory_size,
    output_file,
    request_option,
)
from cure_core.cli.unlearn_parser import add_compare, add_unlearn
from cure_core.cli.values import SetExport, id_list, interactions, nonblank, set_name
from cure_core.model.recipe import RECIPES
from cure_core.settings import json_object

HELP = {
    "data": "print the dataset summary (users, items, samples per split, positive rates)",
    "train": "train the default recommender (or a request's Retrain) and print its metrics",
    "forget": "create a forget request and print its sets (--export: write them as TALLRec/E2URec training data)",
    "evaluate": "evaluate a model on a forget request next to Retrain (trains what is missing)",
    "attribute": "edge attribution (EAP or EAP-IG) of the default model on a request's forget or retain set",
    "circuit": (
        "select circuits, measure their exact faithfulness on held-out prompts, compare forget and retain, export"
    ),
    "groups": (
        "group modules into forget-specific, retain-specific, task-shared and outside, against matched-control noise"
    ),
    "unlearn": "unlearn a request with one method on a copy of the model; report next to Original and Retrain",
    "compare": "run methods over their strength grids; write a Markdown/CSV table and a Plotly HTML Pareto plot",
    "study": "run an evidence study (resumes from the cache)",
    "report": "write every study and run in the cache as one self-contained HTML report, or as Markdown tables",
    "app": "start the Streamlit app",
}
RECIPE_HELP = (
    'recipe overrides of the default model as JSON, e.g. \'{"n_layer": 2, "d_model": 32}\' for a quick demo model, '
    "or the first default's fields (README, 'Default model') to reach its cached models and results"
)
REPORT_FILES = {"html": "cure-report.html", "md": "results.md"}
"""``cure report``'s formats and the file each writes by default."""
MODEL_COMMANDS = ("forget", "evaluate", "attribute", "circuit", "groups", "unlearn", "compare", "study", "app")
"""Commands that work on a model: each takes ``--model PATH`` and the other ModelSource options."""
ATTRIBUTION_FLAGS = {"n_prompts": "--prompts", "n_eval": "--eval-prompts"}
SEED = bounded(int, ge=0)


def build_parser(command: str | None = None) -> CliParser:
    """Every command with its one-line help; the full options of ``command`` only."""
    from cure_core.studies import ABOUT

    parser = CliParser(prog="cure", description="CURE Studio: circuit-aware unlearning for LLM recommenders")
    sub = parser.add_subparsers(required=True, metavar="COMMAND", parser_class=CliParser)
    for name, text in HELP.items():
        if name == "study":
            text += ": " + "; ".join(f"{study}: {about}" for study, about in ABOUT.items())
        p = sub.add_parser(name, help=help_text(text), description=help_text(text))
        if name == command:
            p.add_argument(
                "--data",
                default=None,
                help="GroupLens ml-100k folder/zip or RecBole atomic files (default: MovieLens-100K)",
            )
            if name not in ("data", "report"):
                p.add_argument(
                    "--recipe",
                    choices=RECIPES,
                    default=None,
                    help=help_text(
                        "which model trained here to work on: item (the item-token recommender, default) or text "
                        "(a GPT-2/Llama LM on words with its own BPE tokenizer; README 'Text model')"
                    ),
                )
                p.add_argument("--recipe-json", type=_json_object, default=None, help=help_text(RECIPE_HELP))
            if name in MODEL_COMMANDS:
                _model_options(p)
            OPTIONS[name](p)
    return parser


def _json_object(text: str) -> str:
    """``--recipe-json`` checked as one JSON object; its fields are checked against the recipe
    that ``--recipe`` names once both are parsed (:func:`cure_core.cli.commands.recipe_of`)."""
    json_object(text, "--recipe-json")
    return text


def _model_options(p: argparse.ArgumentParser) -> None:
    from cure_core.model_source import ModelSource

    p.set_defaults(source=SettingsOptions.add(p, ModelSource, list(ModelSource.model_fields)))


def _data(p: argparse.ArgumentParser) -> None:
    from cure_core.cli.commands import cmd_data

    p.set_defaults(func=cmd_data)


def _train(p: argparse.ArgumentParser) -> None:
    from cure_core.cli.commands import cmd_train

    request_option(p, "--retrain", "train the Retrain reference of this request instead", metavar="REQUEST_ID")
    p.add_argument("--threads", type=bounded(int, ge=1), default=None, help="torch threads (default: all cores)")
    p.add_argument(
        "--force",
        action="store_true",
        help="retrain even if the model is cached (the old one is replaced only on success)",
    )
    p.set_defaults(func=cmd_train)


def _forget(p: argparse.ArgumentParser) -> None:
    from cure_core.cli.commands import cmd_forget
    from cure_core.requests import ForgetRequest, parse_share
    from cure_core.settings import choices

    who = p.add_mutually_exclusive_group()
    who.add_argument(
        "--users", type=lambda raw: parse_share(raw, "--users"), help="share of users, e.g. 5%% or 0.05 (default 5%%)"
    )
    who.add_argument("--user-ids", type=id_list("--user-ids"), help="comma-separated user ids")
    who.add_argument("--genre", type=nonblank("--genre"), help="every sample with a movie of this genre")
    who.add_argument("--items", type=id_list("--items"), help="comma-separated item ids")
    who.add_argument(
        "--interactions",
        type=interactions,
        help="comma-separated USER:ITEM ratings; each covers every sample carrying it (as target or in the history)",
    )
    p.add_argument(
        "--scope",
        choices=choices(ForgetRequest, "item_scope"),
        default="target_or_history",
        help="item requests: match the target only, or the history too",
    )
    p.add_argument("--seed", type=SEED, default=0, help="seed of the user draw (default 0)")
    p.add_argument(
        "--export",
        nargs=2,
        action=SetExport,
        metavar=("FORMAT", "DIR"),
        help=(
            "also write the request's retain, valid, test and forget sets into the new or empty folder DIR as "
            "training data of tallrec (instruction/input/output records) or e2urec (input/output), in that "
            "profile's prompt text, to train a Retrain with that project's own script"
        ),
    )
    p.set_defaults(func=cmd_forget)


def _evaluate(p: argparse.ArgumentParser) -> None:
    from cure_core.cli.commands import cmd_evaluate

    request_option(p)
    p.add_argument(
        "--which",
        default="original",
        help="the model to score: 'original' (default), 'retrain', or the model folder of a run in the cache",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_evaluate)


def _attribution_options(
    p: argparse.ArgumentParser, sets: str | None, corruption_default: str | None = "history"
) -> None:
    from cure_core.circuits import AttributionSettings

    request_option(p)
    if sets is not None:
        both = (
            " or 'both' (forget and retain, with the matched control draw 0 as noise floor)" if sets == "both" else ""
        )
        p.add_argument(
            "--set",
            dest="set_name",
            type=set_name(sets == "both"),
            default=sets,
            help=f"forget, retain, control-N (matched control draw N){both}; default {sets}",
        )
    corruption_help = AttributionSettings.model_fields["corruption"].description + (
        " (default history)" if corruption_default else " (default: target for item requests, history otherwise)"
    )
    attribution = SettingsOptions.add(
        p,
        AttributionSettings,
        ["method", "steps", "corruption", "metric", "n_prompts", "n_eval", "batch_size", "seed"],
        rename=ATTRIBUTION_FLAGS,
        defaults={"corruption": corruption_default},
        helps={"corruption": corruption_help},
    )
    p.add_argument(
        "--max-memory",
        type=memory_size,
        default=None,
        metavar="SIZE",
        help=(
            "bound each attribution pass's working set (e.g. 8GiB): IG steps run in several passes and batches in "
            "smaller pieces when needed; the scores stay the same, and cached results are reused (default: no bound)"
        ),
    )
    p.add_argument("--force", action="store_true", help="recompute even if cached")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(attribution=attribution)


def _attribute(p: argparse.ArgumentParser) -> None:
    from cure_core.cli.circuit_commands import cmd_attribute

    _attribution_options(p, sets="forget")
    p.add_argument(
        "--top", type=bounded(int, ge=1), default=15, help="edges and modules to print (default 15; at most every edge)"
    )
    p.set_defaults(func=cmd_attribute)


def _circuit(p: argparse.ArgumentParser) -> None:
    from cure_core.cli.circuit_commands import cmd_circuit

    _attribution_options(p, sets="both")
    rule = p.add_mutually_exclusive_group()
    rule.add_argument("--top-n", type=bounded(int, ge=1), help="keep the N edges of largest |score| (default 100)")
    rule.add_argument("--threshold", type=bounded(float, ge=0), help="keep edges with |score| at least this")
    rule.add_argument(
        "--share",
        type=bounded(float, gt=0, le=1),
        help="keep the fewest top edges holding this share of the total |score| (0-1]",
    )
    rule.add_argument("--greedy", type=bounded(int, ge=1), metavar="N", help="grow N edges greedily from the logits")
    p.add_argument(
        "--curve-points",
        type=bounded(int, ge=0),
        default=12,
        help="sizes on the faithfulness curve (0: no curve; default 12)",
    )
    p.add_argument(
        "--export",
        nargs=2,
        metavar=("FORMAT", "PATH"),
        help=(
            "write the circuit as json, graphml or csv (with --set both, one file per set: PATH gets "
            "-forget/-retain/-control-0)"
        ),
    )
    p.set_defaults(func=cmd_circuit)


def _groups(p: argparse.ArgumentParser) -> None:
    from cure_core.cli.circuit_commands import cmd_groups

    _attribution_options(p, sets=None, corruption_default=None)
    group_options(p, ["threshold_rule", "threshold", "null_draws", "embedding_rows"])
    p.add_argument("--csv", metavar="PATH", type=output_file, help="write the module table as CSV")
    p.set_defaults(func=cmd_groups)


def _study(p: argparse.ArgumentParser) -> None:
    from cure_core.cli.commands import cmd_study
    from cure_core.studies import ABOUT

    p.add_argument("name", choices=list(ABOUT))
    p.add_argument("--quick", action="store_true", help="the minutes-long settings used by the tests")
    p.add_argument(
        "--request", default=None, help="pareto/difficulty: default, users:5%%, genre:Horror or a saved request id"
    )
    p.add_argument(
        "--settings-json", default=None, help="override any study setting as JSON, e.g. '{\"seeds\": [0, 1]}'"
    )
    p.set_defaults(func=cmd_study)


def _report(p: argparse.ArgumentParser) -> None:
    from cure_core.cli.commands import cmd_report

    p.add_argument(
        "--format",
        choices=list(REPORT_FILES),
        default="html",
        help="html: one self-contained page with the figures; md: the tables in Markdown, each with its command, "
        "seeds, hardware and commit (e.g. --out docs/results.md); default html",
    )
    p.add_argument(
        "--out",
        type=output_file,
        default=None,
        help="output file (default ./" + " or ./".join(REPORT_FILES.values()) + ", by --format)",
    )
    p.set_defaults(func=cmd_report)


def _app(p: argparse.ArgumentParser) -> None:
    from cure_core.cli.commands import cmd_app
    from cure_core.environment import LOOPBACK, checked_host

    p.add_argument("--port", type=bounded(int, ge=1, le=65535), default=8501, help="port of the app (default 8501)")
    p.add_argument(
        "--host",
        type=checked_host,
        default=None,
        help=f"IP address the app listens on (default: CURE_HOST, else {LOOPBACK}: this machine only; "
        "0.0.0.0 for every interface)",
    )
    p.set_defaults(func=cmd_app)


OPTIONS: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "data": _data,
    "train": _train,
    "forget": _forget,
    "evaluate": _evaluate,
    "attribute": _attribute,
    "circuit": _circuit,
    "groups": _groups,
    "unlearn": add_unlearn,
    "compare": add_compare,
    "study": _study,
    "report": _report,
    "app": _app,
}
