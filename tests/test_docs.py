"""The documentation stays true to the product.

- **Phrases**: the README, the docs and the docstrings and comments of the code describe what the
  product does, never how it was made. Lab-notebook phrases (:data:`LAB_NOTEBOOK`: work sessions,
  rounds of work, the ticket behind a change, where or when a figure was taken, what the code did
  earlier) are flagged; ``CHANGELOG.md`` holds the history and is exempt. Browser sessions are the
  app's own subject and stay allowed.
- **Links and references**: every relative Markdown link (with its ``#anchor``), every ``docs/…``
  path and every ``method.md §N`` reference resolves.
- **Commands**: every ``cure …`` line in a code block of the README or the docs (also under
  ``torchrun``/``accelerate launch -m cure_core.cli``) parses with the current CLI parser, without
  running anything.
"""

from __future__ import annotations

import ast
import io
import re
import shlex
import tokenize
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CODE_FOLDERS = ("cure_core", "analysis", "app", "benchmarks", "tests")
HISTORY = ROOT / "CHANGELOG.md"

# Each pattern names a way of narrating the project's own making. "session" alone is the app's
# vocabulary (a browser session, Streamlit's session_state), so only the work-session forms count.
LAB_NOTEBOOK = {
    "a work session": r"(?<!browser )\b(?:this|last|previous|next|earlier|since) session\b(?![_ ]state)",
    "a numbered session": r"\bsessions? \d+",
    "the ticket": r"\bthe issue(?:'s| asks| asked| wants| says)|\bissue #?\d+\b",
    "a round of work": r"\b(?:this|last|previous|next) round\b",
    "where it was measured": r"\bmeasured here\b|\bon this machine, in this\b",
    "what it did before": r"\bbefore, it\b|\bused to report\b",
    "a lent machine": r"\blent to (?:this|the) (?:session|task)\b",
}
LAB_NOTEBOOK_RE = {name: re.compile(pattern, re.IGNORECASE) for name, pattern in LAB_NOTEBOOK.items()}


def markdown_files(include_history: bool = False) -> list[Path]:
    """The project's Markdown files: top level, docs/, and the READMEs of the code folders."""
    found = sorted(ROOT.glob("*.md")) + sorted((ROOT / "docs").rglob("*.md"))
    for folder in (*CODE_FOLDERS, "cache"):
        found += sorted((ROOT / folder).rglob("*.md"))
    return [p for p in found if include_history or p != HISTORY]


def python_files() -> list[Path]:
    return [p for folder in CODE_FOLDERS for p in sorted((ROOT / folder).rglob("*.py")) if "__pycache__" not in p.parts]


def prose_of_python(path: Path) -> list[tuple[int, str]]:
    """``(line, text)`` of every comment and every bare string statement (docstrings included):
    the prose of a Python file, without the strings the program itself shows or uses."""
    source = path.read_text(encoding="utf-8")
    found = [
        (tok.start[0], tok.string)
        for tok in tokenize.generate_tokens(io.StringIO(source).readline)
        if tok.type == tokenize.COMMENT
    ]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            found += [(node.lineno + i, line) for i, line in enumerate(node.value.value.splitlines())]
    return found


def lab_notebook_hits(lines: list[tuple[int, str]]) -> list[str]:
    return [
        f"line {number}: {name}: {match.group(0)!r}"
        for number, text in lines
        for name, pattern in LAB_NOTEBOOK_RE.items()
        for match in pattern.finditer(text)
    ]


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", markdown_files(), ids=_rel)
def test_markdown_speaks_of_the_product(path: Path) -> None:
    hits = lab_notebook_hits(list(enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)))
    assert not hits, f"{_rel(path)} narrates how the project was made (history goes to CHANGELOG.md): {hits}"


def test_code_prose_speaks_of_the_product() -> None:
    hits = [f"{_rel(p)} {hit}" for p in python_files() for hit in lab_notebook_hits(prose_of_python(p))]
    assert not hits, "docstrings/comments narrate how the project was made:\n" + "\n".join(hits)


@pytest.mark.parametrize(
    "text",
    [
        "Each browser session keeps its own runs.",
        "No run in this browser session yet.",
        "st.session_state holds the choice; this session_state key is per tab.",
    ],
)
def test_browser_sessions_are_not_flagged(text: str) -> None:
    assert not lab_notebook_hits([(1, text)])


@pytest.mark.parametrize(
    "text",
    [
        "Measured in this session on two cores.",
        "since session 4 the default is v2",
        "the issue's target is met",
        "measured here, 2 threads",
        "before, it reported 2 ratings",
        "one H200 lent to this session",
        "Four variants ran last session.",
    ],
)
def test_lab_notebook_phrases_are_flagged(text: str) -> None:
    assert lab_notebook_hits([(1, text)])


# --- links and references ---------------------------------------------------------------------

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
DOCS_PATH = re.compile(r"(?<![\w/.-])docs/[\w./-]*\w")
METHOD_REF = re.compile(r"method\.md\s*((?:§\d+)(?:\s*(?:[–,-]|and)\s*§\d+)*)")
SECTION = re.compile(r"§(\d+)")
METHOD_HEADING = re.compile(r"^## (\d+)\. ", re.MULTILINE)


def without_code_blocks(text: str) -> str:
    return FENCE.sub("", text)


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown file (duplicates get -1, -2, …)."""
    anchors: set[str] = set()
    counts: dict[str, int] = {}
    for line in without_code_blocks(markdown).splitlines():
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading is None:
            continue
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.group(1))  # a link keeps its text
        slug = "".join(c for c in text.lower() if c.isalnum() or c in " -_").replace(" ", "-")
        n = counts.get(slug, 0)
        counts[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def method_sections() -> set[int]:
    return {int(n) for n in METHOD_HEADING.findall((ROOT / "docs" / "method.md").read_text(encoding="utf-8"))}


def referenced_sections(text: str) -> list[int]:
    """Section numbers of every ``method.md §N`` reference, ranges expanded (``§3–§5``)."""
    found = []
    for ref in METHOD_REF.finditer(text):
        numbers = [int(n) for n in SECTION.findall(ref.group(1))]
        ranges = re.findall(r"§(\d+)\s*[–-]\s*§(\d+)", ref.group(1))
        for lo, hi in ranges:
            numbers += range(int(lo), int(hi) + 1)
        found += numbers
    return found


def broken_links(path: Path) -> list[str]:
    text = without_code_blocks(path.read_text(encoding="utf-8"))
    broken = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: …
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in github_anchors(linked.read_text(encoding="utf-8")):
            broken.append(f"{target}: no heading with anchor #{anchor} in {_rel(linked)}")
    return broken


@pytest.mark.parametrize("path", markdown_files(include_history=True), ids=_rel)
def test_relative_links_resolve(path: Path) -> None:
    broken = broken_links(path)
    assert not broken, f"{_rel(path)}: " + "; ".join(broken)


def test_docs_paths_and_method_sections_resolve() -> None:
    sections = method_sections()
    assert sections, "docs/method.md has no numbered '## N. ' sections"
    problems = []
    for path in markdown_files(include_history=True) + python_files():
        if path == Path(__file__).resolve():
            continue
        text = path.read_text(encoding="utf-8")
        problems += [
            f"{_rel(path)}: {ref} does not exist" for ref in DOCS_PATH.findall(text) if not (ROOT / ref).exists()
        ]
        problems += [
            f"{_rel(path)}: method.md §{n} is not a section of docs/method.md"
            for n in referenced_sections(text)
            if n not in sections
        ]
    assert not problems, "\n".join(problems)


def test_reference_parsing_reads_ranges_and_lists() -> None:
    assert referenced_sections("(method.md §3–§5)") == [3, 5, 3, 4, 5]
    assert referenced_sections("see method.md §1, §2, §8 and method.md §6") == [1, 2, 8, 6]
    assert github_anchors("## 1. Task, samples and splits\n### `cure study`\n## A\n## A") == {
        "1-task-samples-and-splits",
        "cure-study",
        "a",
        "a-1",
    }


# --- commands ---------------------------------------------------------------------------------

CODE_BLOCK = re.compile(r"^```[ \t]*(\w*)[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
CURE_EXECUTABLES = {"cure", ".venv/bin/cure"}


@dataclass(frozen=True)
class CommandLine:
    where: str
    args: tuple[str, ...]


def cure_lines(path: Path) -> list[CommandLine]:
    """Every ``cure`` invocation in the shell code blocks of ``path``, as its argument list, with
    shell variables (``M="--model …"``) expanded: a variable set in one block holds in the blocks
    below it, as in a shell the reader keeps open while reading the page."""
    text = path.read_text(encoding="utf-8")
    found = []
    variables: dict[str, str] = {}
    for block in CODE_BLOCK.finditer(text):
        if block.group(1) not in ("", "bash", "sh", "shell", "console"):
            continue
        first_line = text.count("\n", 0, block.start(2)) + 1
        for offset, line in enumerate(block.group(2).replace("\\\n", " ").splitlines()):
            words = shlex.split(line, comments=True)
            if len(words) == 1 and (assigned := ASSIGNMENT.match(words[0])):
                variables[assigned.group(1)] = assigned.group(2)
                continue
            words = [w for word in words for w in _expand(word, variables)]
            args = _cure_arguments(words)
            if args is None:
                continue
            found.append(CommandLine(f"{_rel(path)}:{first_line + offset}", tuple(args)))
    return found


def _cure_arguments(words: list[str]) -> list[str] | None:
    """The arguments after ``cure`` (or ``-m cure_core.cli`` under a launcher), leading
    ``NAME=value`` environment words skipped; ``None`` for any other command."""
    while words and ASSIGNMENT.match(words[0]):  # OMP_NUM_THREADS=1 cure …
        words = words[1:]
    if words and words[0] in CURE_EXECUTABLES:
        return words[1:]
    for i, word in enumerate(words[:-1]):
        if word == "-m" and words[i + 1] == "cure_core.cli":
            return words[i + 2 :]
    return None


def _expand(word: str, variables: dict[str, str]) -> list[str]:
    """A shell word with ``$NAME`` expanded; an unquoted variable splits into words."""
    if word.startswith("$") and word[1:] in variables:
        return shlex.split(variables[word[1:]])
    return [word]


def documented_commands() -> list[CommandLine]:
    pages = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
    return [line for page in pages if page.exists() for line in cure_lines(page)]


def test_the_docs_show_commands() -> None:
    commands = {line.args[0] for line in documented_commands() if line.args}
    assert {"train", "forget", "evaluate", "circuit", "groups", "unlearn", "app"} <= commands


@pytest.mark.parametrize("line", documented_commands(), ids=lambda line: line.where)
def test_documented_command_parses(line: CommandLine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Parse only: ``--request ID`` would read a saved request from the (empty, temporary)
    cache, so request ids are taken as written; output paths are checked in a temporary folder."""
    from cure_core.cli import options as cli_options
    from cure_core.cli import parser as cli_parser
    from cure_core.errors import CureError

    monkeypatch.setattr(cli_options, "saved_request", lambda request_id: request_id)
    monkeypatch.chdir(tmp_path)
    assert line.args, f"{line.where}: `cure` with no command"
    command = line.args[0]
    assert command in cli_parser.HELP, f"{line.where}: `cure {command}` is not a command"
    try:
        args = cli_parser.build_parser(command).parse_args(list(line.args))
    except (CureError, SystemExit) as err:
        pytest.fail(f"{line.where}: `cure {' '.join(line.args)}` does not parse: {err}")
    assert callable(args.func)
