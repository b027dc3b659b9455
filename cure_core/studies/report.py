"""``cure report``: one self-contained HTML file of every study and unlearning run in the cache
(figures embedded with plotly.js inline once, tables, settings, time, versions)."""

from __future__ import annotations

import datetime as dt
import html
import json
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.io as pio

from cure_core.cache import atomic_write_bytes, cache_dir
from cure_core.errors import CureError
from cure_core.studies.store import cached_models, figure, load_results, model_label, versions

STYLE = (
    """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1200px;color:#222;padding:0 1rem}
h1{margin-bottom:0}h2{border-bottom:2px solid #ddd;padding-bottom:.2rem;margin-top:2.5rem}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}"""
    """td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:right}
th{background:#f5f5f5}.summary li{margin:.3rem 0}.meta{color:#666;font-size:.85rem}details{margin:.5rem 0}
pre{background:#f7f7f7;padding:.5rem;overflow-x:auto;font-size:.8rem}
"""
)


def run_reports() -> list[dict[str, Any]]:
    """Every finished unlearning run's headline numbers (``cache/runs/*/report.json``)."""
    rows = []
    for path in sorted(cache_dir("runs").glob("*/report.json")):
        try:
            r = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        rows.append(
            {
                k: r.get(k)
                for k in (
                    "run",
                    "request",
                    "method",
                    "strength",
                    "test_auc",
                    "forget_auc",
                    "retrain_forget_auc",
                    "jsd_to_retrain",
                    "mia_auc",
                    "retrain_mia_auc",
                    "seconds",
                )
            }
            | {"seed": r.get("config", {}).get("seed"), "forget_loss": r.get("config", {}).get("forget_loss")}
            | {"model": r.get("model_label"), "command": run_command(r)}
        )
    return rows


def run_command(report: dict[str, Any]) -> str:
    """The ``cure unlearn`` line of a run: its request, method and strength, and each option of
    the command whose value in the run's settings differs from the default."""
    from pydantic import ValidationError

    from cure_core.settings import option_flag
    from cure_core.unlearning.methods import UnlearnConfig

    try:
        config = UnlearnConfig.model_validate(report.get("config", {}))
    except ValidationError:
        return "settings of an earlier version (see the run's report.json)"
    defaults = UnlearnConfig(method=config.method)
    parts = ["cure unlearn", f"--request {report.get('request')}"]
    for field in ("method", "strength", *UnlearnConfig.OPTIONS):
        flag, value = option_flag(field), getattr(config, field)
        if field not in ("method", "strength") and value == getattr(defaults, field):
            continue
        if isinstance(value, bool):
            parts.append(flag)
        else:
            parts.append(f"{flag} {' '.join(value) if isinstance(value, tuple) else value}")
    return " ".join(parts)


def flat_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """A study table without its nested columns (edge lists, group members ...) for display."""
    frame = pd.DataFrame(records)
    return frame[[c for c in frame.columns if not frame[c].map(lambda v: isinstance(v, (list, dict))).any()]]


def _table(records: list[dict[str, Any]]) -> str:
    return flat_frame(records).to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="", border=0)


def _section(result: dict[str, Any], models: dict[str, str], include_js: list[bool]) -> str:
    parts = [
        f"<h2>{html.escape(result['study'])} <span class='meta'>({result['key']}, "
        f"{html.escape(model_label(result, models))}, "
        f"{result.get('total_seconds', result['seconds']):.0f} s)</span></h2>"
    ]
    parts.append(
        "<ul class='summary'>" + "".join(f"<li>{html.escape(line)}</li>" for line in result["summary"]) + "</ul>"
    )
    for name in result["figures"]:
        parts.append(
            pio.to_html(
                figure(result, name), full_html=False, include_plotlyjs="inline" if not include_js[0] else False
            )
        )
        include_js[0] = True
    for name, records in result["tables"].items():
        if records:
            parts.append(
                f"<details><summary>table: {html.escape(name)} ({len(records)} rows)</summary>"
                f"{_table(records)}</details>"
            )
    provenance = {
        "command": result.get("command"),
        "settings": result["settings"],
        "context": result["context"],
        "versions": result["versions"],
    }
    parts.append(
        "<details><summary>settings, command and versions</summary><pre>"
        f"{html.escape(json.dumps(provenance, indent=2, default=str))}</pre></details>"
    )
    return "\n".join(parts)


def build_report(results: list[dict[str, Any]] | None = None) -> str:
    """The HTML text: every study result (newest of each study and settings first), then all runs."""
    results = load_results() if results is None else results
    runs = run_reports()
    if not results and not runs:
        raise CureError(
            "the cache holds no study result and no unlearning run",
            "run a study first, e.g. `cure study pareto --quick`",
        )
    include_js = [False]
    body = [
        f"<h1>CURE Studio report</h1><p class='meta'>Generated {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC "
        f"from <code>{html.escape(str(cache_dir()))}</code>. {len(results)} study result(s), {len(runs)} "
        "unlearning run(s).</p>"
    ]
    body.append(
        "<p>Every number next to Retrain (exact unlearning). JSD: forget-set answer distributions against "
        "Retrain's (lower is closer). Strengths in studies are chosen on a selection half of the forget set "
        "and the validation split, never on test.</p>"
    )
    models = cached_models()
    body += [_section(r, models, include_js) for r in results]
    if runs:
        body.append(
            "<h2>All unlearning runs in the cache</h2>"
            f"<details open><summary>{len(runs)} runs</summary>{_table(runs)}</details>"
        )
    body.append(f"<h2>Versions</h2><pre>{html.escape(json.dumps(versions(), indent=2))}</pre>")
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>CURE Studio report</title>"
        f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>"
    )


def write_report(path: Path) -> Path:
    atomic_write_bytes(path, build_report().encode())
    return path
