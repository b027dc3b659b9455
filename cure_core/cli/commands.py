"""The data, model, request, study, report and app commands, and what every command shares:
the workspace and the one request resolver. Each command checks its own arguments before it
builds the workspace (whose data load takes seconds)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cure_core.cli import printers
from cure_core.errors import CureError

if TYPE_CHECKING:  # imported lazily at run time: torch is slow to import
    from cure_core.environment import Environment
    from cure_core.model.recipe import Recipe, TextRecipe
    from cure_core.model_source import ModelSource
    from cure_core.requests import ForgetRequest
    from cure_core.workspace import Workspace

APP_ENTRY = Path(__file__).resolve().parent.parent.parent / "app" / "Home.py"


def environment(args: argparse.Namespace) -> Environment:
    """The checked ``CURE_*`` variables, read once per command (:func:`cure_core.environment.read_environment`)."""
    from cure_core.environment import read_environment

    if getattr(args, "environment", None) is None:
        args.environment = read_environment()
    return args.environment


def model_source(args: argparse.Namespace) -> ModelSource:
    """``--model`` and the other checkpoint options over the ``CURE_MODEL``... variables."""
    from cure_core.model_source import ModelSource

    options = getattr(args, "source", None)
    if options is None:
        return ModelSource()
    return environment(args).model_source(options.values(args), options.flags)


def data_of(args: argparse.Namespace) -> str | None:
    """``--data``, else ``CURE_DATA`` (``None``: MovieLens-100K)."""
    return getattr(args, "data", None) or environment(args).data


def recipe_of(args: argparse.Namespace) -> Recipe | TextRecipe | None:
    """The recipe of ``--recipe`` with the overrides of ``--recipe-json``, else ``CURE_RECIPE``'s
    (``None``: the default item model)."""
    from cure_core.model.recipe import recipe_from_json

    flags = getattr(args, "recipe_json", None), getattr(args, "recipe", None)
    recipe = recipe_from_json(*flags) if any(flags) else environment(args).recipe
    if recipe is not None and model_source(args).model is not None:
        given = "--recipe/--recipe-json" if any(flags) else "CURE_RECIPE"
        raise CureError(
            f"{given} choose a model trained here, but --model (or CURE_MODEL) gives your own checkpoint",
            f"leave out {given} to work on the checkpoint, or leave out --model/CURE_MODEL",
        )
    return recipe


def workspace(args: argparse.Namespace) -> Workspace:
    """The data of ``--data`` with the model of ``--recipe``/``--recipe-json`` or ``--model``."""
    from cure_core.workspace import Workspace

    ws = Workspace.open(data=data_of(args), recipe=recipe_of(args), source=model_source(args))
    if not ws.models.backend.capabilities.trains_here:
        # a bad checkpoint, adapter, profile or Retrain fails here, before anything is written
        ws.models.original()
        ws.models.load_model("retrain")
    return ws


def item_model_only(args: argparse.Namespace, what: str) -> None:
    """Refuse ``what`` on a user's checkpoint (``--model``), where it is not available yet."""
    if model_source(args).model is not None:
        raise CureError(
            f"{what} works on the item model trained here; on a user's checkpoint (--model) it is not available yet",
            "leave out --model (and --adapter/--profile) to run it on the item model",
        )


def request_of(args: argparse.Namespace, ws: Workspace) -> ForgetRequest:
    """The request of ``--request`` (loaded when parsed), or the default one (5% of users,
    seed 0), saved so that what the command writes about it can name it by id."""
    from cure_core.requests import keep_request

    return args.request if args.request is not None else keep_request(ws.data.default_request())


def cmd_data(args: argparse.Namespace) -> None:
    ws = workspace(args)
    printers.print_summary(ws.data.summary(), ws.data.samples.user_ids, ws.data.dataset.genres)


def cmd_train(args: argparse.Namespace) -> None:
    from cure_core.baselines import baseline_aucs

    ws = workspace(args)
    request = args.retrain
    role = "retrain" if request else "original"
    rec = None if args.force else ws.models.load_model(role, request)
    if rec is None:
        rec = ws.models.train_model(role, request, threads=args.threads, force=args.force)
    else:
        print(f"cached: {rec.path}")
    sets = ws.models.train_sets(role, request)
    printers.print_model(rec, baseline_aucs(ws.data.samples, sets.train, sets.test))


def cmd_forget(args: argparse.Namespace) -> None:
    from cure_core.requests import interaction_request, item_request, save_request, user_request
    from cure_core.set_export import SetExporter

    ws = workspace(args)
    if args.user_ids is not None:
        request = user_request(ws.data.dataset, ws.data.samples, user_ids=args.user_ids)
    elif args.genre is not None:
        request = item_request(ws.data.dataset, ws.data.samples, genre=args.genre, scope=args.scope)
    elif args.items is not None:
        request = item_request(ws.data.dataset, ws.data.samples, item_ids=args.items, scope=args.scope)
    elif args.interactions is not None:
        request = interaction_request(ws.data.dataset, ws.data.samples, args.interactions)
    else:
        request = user_request(ws.data.dataset, ws.data.samples, fraction=args.users, seed=args.seed)
    sets = ws.data.sets(request)
    exporter = SetExporter(args.export[0], ws.data.dataset, ws.data.samples) if args.export else None
    save_request(request)
    trains_here = ws.models.backend.capabilities.trains_here
    printers.print_request(request, sets.sizes(), trains_here=trains_here)
    if not trains_here and len(sets.forget):
        original = ws.models.original()
        printers.print_model_card(ws.models.backend.source, original)
        printers.print_prompt(original, ws.data.samples, int(sets.forget[0]))
    if exporter is not None:
        folder = args.export[1]
        counts = exporter.write(request, sets, folder)
        print(f"exported ({exporter.name}): {folder} — " + ", ".join(f"{n} {k}" for k, n in counts.items()))


def cmd_evaluate(args: argparse.Namespace) -> None:
    from cure_core.evaluate import compare_to_retrain
    from cure_core.model_source import MissingRetrainError

    which = args.which
    model_dir = None if which in ("original", "retrain") else Path(which)
    if model_dir is not None and not (model_dir / "meta.json").is_file():
        raise CureError(
            f"--which {which} is not a model folder (no meta.json)",
            "use original, retrain, or the model folder of a run under cache/runs",
        )
    ws = workspace(args)
    capabilities = ws.models.backend.capabilities
    if which == "retrain" and not capabilities.has_retrain:
        raise MissingRetrainError()
    request = request_of(args, ws)
    original, retrain = ws.models.reference_models(request, quiet=args.json)
    if which == "retrain":
        rec = retrain  # present: a user's model without one was refused above
    else:
        rec = (
            original
            if which == "original"
            else ws.models.backend.load_run_model(model_dir, ws.data.dataset, ws.data.samples)
        )  # type: ignore[arg-type]
    report = compare_to_retrain(rec, retrain, request, ws.data.samples, ws.data.sets(request), name=which)
    if args.json:
        printers.print_json(report)
        return
    if not capabilities.trains_here:
        printers.print_model_card(ws.models.backend.source, original)
    printers.print_evaluation(report, request)


def cmd_study(args: argparse.Namespace) -> None:
    from cure_core.settings import json_object, validated
    from cure_core.studies.registry import STUDIES
    from cure_core.studies.store import study_folder

    item_model_only(args, "cure study")
    study = STUDIES[args.name]
    settings = study.settings.quick() if args.quick else study.settings()
    update = json_object(args.settings_json, "--settings-json") if args.settings_json else {}
    if args.request:
        if "request" not in study.settings.model_fields:
            raise CureError(f"the {args.name} study takes no --request", "leave it out; see `cure study --help`")
        update["request"] = args.request
    settings = validated(
        study.settings,
        {**settings.model_dump(), **update},
        f"{args.name} settings",
        f"valid fields: {', '.join(study.settings.model_fields)}",
    )
    result = study.run(workspace(args), settings)
    print(
        f"\n# {args.name} ({result['seconds']:.0f} s now, {result['total_seconds']:.0f} s over "
        f"{len(result['invocations'])} invocation(s))"
    )
    for line in result["summary"]:
        print(f"- {line}")
    print(
        f"saved: {study_folder(args.name, result['key']) / 'result.json'} — see it in the app's Report "
        "page or with `cure report`"
    )


def cmd_report(args: argparse.Namespace) -> None:
    from cure_core.cli.options import output_file
    from cure_core.cli.parser import REPORT_FILES
    from cure_core.studies.markdown_report import write_markdown
    from cure_core.studies.report import write_report

    out = args.out or output_file(REPORT_FILES[args.format])
    print(f"written: {(write_markdown if args.format == 'md' else write_report)(out)}")


def cmd_app(args: argparse.Namespace) -> int:
    from cure_core.environment import HOST, LOOPBACK, is_loopback

    cmd, env, host = app_command(args)
    if not is_loopback(host):
        print(
            f"note: the app listens on {host}: anyone who reaches this machine on port {args.port} can open "
            f"checkpoints under the allowed folders and start trainings (leave out --host and {HOST} for "
            f"{LOOPBACK} only)",
            file=sys.stderr,
        )
    return subprocess.call(cmd, env=env)


def app_command(args: argparse.Namespace) -> tuple[list[str], dict[str, str], str]:
    """The Streamlit command line, its environment and the address it listens on: ``--host``,
    else ``CURE_HOST``, else this machine only. The chosen data, recipe and checkpoint reach the
    app as the ``CURE_*`` variables it reads (the flags replace the caller's)."""
    from cure_core.environment import DATA, LOOPBACK, RECIPE
    from cure_core.model_source import ENVIRONMENT

    host = args.host or environment(args).host or LOOPBACK
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP_ENTRY), "--server.address", host]
    cmd += ["--server.port", str(args.port), "--browser.gatherUsageStats", "false"]
    chosen, source, data = recipe_of(args), model_source(args), data_of(args)
    env = {k: v for k, v in os.environ.items() if k not in (*ENVIRONMENT.values(), DATA, RECIPE)}
    env |= source.environment() | ({DATA: data} if data else {})
    env |= {RECIPE: chosen.model_dump_json()} if chosen is not None else {}
    return cmd, env, host
