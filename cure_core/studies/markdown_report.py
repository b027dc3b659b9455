"""``cure report --format md``: the study results and unlearning runs in the cache as one
Markdown file (``docs/results.md``), so a re-run never needs a number typed by hand.

Each table says the command that produced it, the seeds, the hardware and, when the result
recorded one, the source commit; the verdict lines of each study sit under its heading. The text
depends on the cache alone — sorted, no clock time — so the same cache always writes the same
file. Figures are left to the HTML report (``cure report``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from cure_core.cache import atomic_write_bytes
from cure_core.errors import CureError
from cure_core.studies import ABOUT
from cure_core.studies.report import flat_frame, run_reports
from cure_core.studies.store import cached_models, load_results, model_label

HEADER = (
    "# Results\n\n"
    "Written by `cure report --format md --out docs/results.md` from the study results and unlearning runs in the "
    "cache; run it again after a study to bring this file up to date. Every number is next to Retrain (exact "
    "unlearning); JSD compares forget-set answer distributions with Retrain's (lower is closer). Figures are in "
    "the HTML report (`cure report`).\n"
)


def build_markdown(results: list[dict[str, Any]] | None = None, runs: list[dict[str, Any]] | None = None) -> str:
    """The Markdown text: every study result (by study, then settings key), then every run."""
    results = load_results() if results is None else results
    runs = run_reports() if runs is None else runs
    if not results and not runs:
        raise CureError(
            "the cache holds no study result and no unlearning run",
            "run a study first, e.g. `cure study pareto --quick`",
        )
    models = cached_models()
    parts = [HEADER]
    for result in sorted(results, key=lambda r: (r["study"], r["key"])):
        parts.append(_study_section(result, models))
    if runs:
        parts.append(_runs_section(runs))
    return "\n".join(parts)


def _study_section(result: dict[str, Any], models: dict[str, str]) -> str:
    study = result["study"]
    lines = [f"## {study}: {model_label(result, models)} (`{result['key']}`)", ""]
    if study in ABOUT:
        lines += [f"{ABOUT[study][0].upper()}{ABOUT[study][1:]}.", ""]
    lines += ["**Verdict**", ""] + [f"- {line}" for line in result["summary"]] + [""]
    provenance = _provenance(result)
    for name, records in result["tables"].items():
        if records:
            lines += [f"### {study}: {name}", "", provenance, "", markdown_table(records), ""]
    return "\n".join(lines)


def _provenance(result: dict[str, Any]) -> str:
    """One line: command, seeds, hardware, commit (when recorded) and compute time."""
    seeds = {k: v for k, v in result["settings"].items() if "seed" in k}
    v = result.get("versions", {})
    fields = [
        f"Command: `{result.get('command') or 'not recorded'}`",
        "seeds: " + (", ".join(f"{k} {_value(s)}" for k, s in sorted(seeds.items())) or "none"),
        f"hardware: {v.get('machine', '?')}, {v.get('torch threads', '?')} torch threads, torch {v.get('torch', '?')}",
    ]
    if v.get("commit"):
        fields.append(f"commit: `{v['commit']}`")
    fields.append(f"compute: {result.get('total_seconds', result['seconds']):.0f} s")
    return " · ".join(fields)


def _runs_section(runs: list[dict[str, Any]]) -> str:
    rows = sorted(runs, key=lambda r: str(r.get("run")))
    return "\n".join(
        [
            "## Unlearning runs in the cache",
            "",
            "Each row's `command` reruns it (the run's other settings are the defaults); "
            "`cache/runs/<run>/report.json` holds every setting and metric.",
            "",
            markdown_table(rows),
            "",
        ]
    )


def markdown_table(records: list[dict[str, Any]]) -> str:
    """A pipe table of ``records`` without their nested columns; numbers to 4 significant digits."""
    frame = flat_frame(records)
    header = "| " + " | ".join(_cell(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(_cell(_value(x)) for x in row.values()) + " |" for row in frame.to_dict("records")]
    return "\n".join([header, rule, *body])


def _value(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:.4g}"
    if isinstance(x, (list, tuple)):
        return "[" + ", ".join(_value(i) for i in x) + "]"
    return str(x)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def write_markdown(path: Path) -> Path:
    atomic_write_bytes(path, build_markdown().encode())
    return path
