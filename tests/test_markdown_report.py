"""``cure report --format md`` on a tiny cached study and its runs: every table with its rows,
numbers as the records hold them, its command, seeds and commit; the same cache writes the same
bytes; each run's command parses back to the run's settings."""

from __future__ import annotations

import json
import shlex

from cure_core.cache import cache_dir
from cure_core.cli import main
from cure_core.cli.parser import build_parser
from cure_core.studies.markdown_report import _value, build_markdown
from cure_core.studies.registry import STUDIES
from cure_core.studies.report import flat_frame, run_reports
from cure_core.studies.store import load_results
from cure_core.unlearning.methods import UnlearnConfig


def _table_after(text: str, heading: str) -> list[list[str]]:
    """The data rows of the first pipe table after ``heading``."""
    lines = text[text.index(heading) :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| "))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("| "):
            break
        rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def test_markdown_report_of_a_cached_study(tiny_ws, tmp_path):
    settings = STUDIES["pareto"].settings.quick().model_copy(update={"variants": ["GA"], "seeds": [0]})
    key = STUDIES["pareto"].run(tiny_ws, settings, quiet=True)["key"]
    result = next(r for r in load_results() if r["key"] == key)  # as stored: the report reads the cache
    out = tmp_path / "docs" / "results.md"
    out.parent.mkdir()
    assert main(["report", "--format", "md", "--out", str(out)]) == 0
    text = out.read_text()

    for name, records in result["tables"].items():
        heading = f"### pareto: {name}"
        assert heading in text
        section = text[text.index(heading) :]
        provenance = section.splitlines()[2]
        assert f"Command: `{result['command']}`" in provenance and "seeds: seeds [0]" in provenance
        commit = result["versions"].get("commit")
        assert (f"commit: `{commit}`" in provenance) == bool(commit)
        frame = flat_frame(records)
        expected = [[_value(v) for v in row.values()] for row in frame.to_dict("records")]
        assert _table_after(text, heading) == expected
    assert all(f"- {line}" in text for line in result["summary"])

    # the same cache writes the same bytes, whatever order the results are read in
    assert build_markdown() == text
    assert build_markdown(list(reversed(load_results()))) == text
    again = tmp_path / "again.md"
    assert main(["report", "--format", "md", "--out", str(again)]) == 0 and again.read_bytes() == out.read_bytes()

    # every run in the cache is one row, whose command parses back to the run's settings
    runs = run_reports()
    rows = _table_after(text, "## Unlearning runs in the cache")
    assert len(rows) == len(runs) == len(list(cache_dir("runs").glob("*/report.json"))) > 0
    for run in runs:
        argv = shlex.split(run["command"])
        assert argv[:2] == ["cure", "unlearn"]
        args = build_parser("unlearn").parse_args(argv[1:])
        stored = json.loads((cache_dir("runs") / run["run"] / "report.json").read_text())["config"]
        assert args.unlearn.build(args) == UnlearnConfig.model_validate(stored)


def test_markdown_report_of_an_empty_cache_is_one_line(capsys, tmp_path):
    assert main(["report", "--format", "md", "--out", str(tmp_path / "r.md")]) == 2
    assert "holds no study result" in capsys.readouterr().err and not (tmp_path / "r.md").exists()
