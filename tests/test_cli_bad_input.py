"""Every bad input a user can type: exit status 2, one line ``error: ... — fix: ...``, no
traceback, nothing written to the cache. Most cases fail where the arguments are parsed, before
any data is read; the data cases use a small GroupLens folder written to a temp dir."""

from __future__ import annotations

import os
import shlex
import zipfile

import pytest

from cure_core.cli.parser import HELP
from tests.cli_errors import assert_one_error_line, run, written
from tests.test_data import write_grouplens

TINY = '{"n_layer": 1, "n_head": 2, "d_model": 16, "d_mlp": 16}'

# (the arguments after `cure` as typed, split as a shell splits them; the text the error line must name)
CASES: list[tuple[str, str]] = [
    ("circuit --top-n 0", "--top-n"),
    ("circuit --top-n -5", "--top-n"),
    ("circuit --greedy -3", "--greedy"),
    ("circuit --greedy 0", "--greedy"),
    ("circuit --share 1.5", "--share"),
    ("circuit --share 0", "--share"),
    ("circuit --share -0.2", "--share"),
    ("circuit --threshold -1", "--threshold"),
    ("circuit --top-n 5 --share 0.5", "not allowed with"),
    ("circuit --curve-points -3", "--curve-points"),
    ("circuit --set bogus", "unknown set"),
    ("circuit --export xml out.xml", "unknown export format"),
    ("circuit --export json", "--export"),
    ("groups --threshold 1.5", "--threshold"),
    ("groups --threshold 0", "--threshold"),
    ("groups --threshold -0.5", "--threshold"),
    ("groups --threshold-rule quantile --threshold 2", "quantile rule"),
    ("groups --threshold-rule absolute --threshold -1", "absolute"),
    ("groups --threshold-rule median", "invalid choice"),
    ("groups --draws 0", "--draws"),
    ("groups --draws 51", "--draws"),
    ("groups --set forget", "unrecognized arguments"),
    ("unlearn --method npo --threshold 5", "--threshold"),
    ("unlearn --method bogus", "invalid choice: 'bogus'"),
    ("unlearn", "--method"),
    ("unlearn --method npo --steps 0", "--steps"),
    ("unlearn --method npo --batch-size 0", "--batch-size"),
    ("unlearn --method npo --strength 0", "--strength"),
    ("unlearn --method npo --strength abc", "--strength"),
    ("unlearn --method npo --retain-weight -1", "--retain-weight"),
    ("unlearn --method npo --forget-loss kl", "invalid choice"),
    ("unlearn --method npo --seed -1", "--seed"),
    ("unlearn --method npo --request user-deadbeef", "no forget request"),
    ("unlearn --method npo --lora-rank 0", "--lora-rank"),
    ("unlearn --method npo --lora --lora-alpha 0", "--lora-alpha"),
    ("unlearn --method npo --lora-rank 4", "add --lora"),
    ("unlearn --method npo --lora-targets", "--lora-targets"),
    ("attribute --seed -1", "--seed"),
    ("attribute --steps 0", "--steps"),
    ("attribute --steps 500", "--steps"),
    ("attribute --prompts 0", "--prompts"),
    ("attribute --eval-prompts 0", "--eval-prompts"),
    ("attribute --batch-size 0", "--batch-size"),
    ("attribute --top 0", "--top"),
    ("attribute --method ig", "invalid choice"),
    ("attribute --corruption genre", "invalid choice"),
    ("attribute --set control-x", "unknown set"),
    ("attribute --unknown 3", "unrecognized arguments"),
    ("forget --seed -1", "--seed"),
    ("forget --users 150%", "outside (0, 1)"),
    ("forget --users 0", "outside (0, 1)"),
    ("forget --users lots", "is not a share"),
    ("forget --users ''", "is not a share"),
    ("forget --user-ids ,,,", "names no id"),
    ("forget --genre ''", "--genre is empty"),
    ("forget --items ,", "names no id"),
    ("forget --interactions ''", "names no id"),
    ("forget --interactions 196:", "blank user or item id"),
    ("forget --interactions :242", "blank user or item id"),
    ("forget --interactions 1-2", "is not USER:ITEM"),
    ("forget --interactions 1:2:3", "is not USER:ITEM"),
    ("forget --users 5% --genre Horror", "not allowed with"),
    ("forget --scope history", "invalid choice"),
    ("forget --export alpaca out", "unknown export format"),
    ("forget --export tallrec", "--export"),
    ("forget --user-ids 0,424242", "unknown user id(s): 0, 424242"),
    ("forget --genre Polka", "no item has the genre"),
    ("forget --items 99999", "unknown item id"),
    ("forget --interactions 99999:1", "unknown user id"),
    ("evaluate --request user-deadbeef", "no forget request"),
    ("evaluate --which no/such/folder", "not a model folder"),
    ("train --retrain nope", "no forget request"),
    ("train --threads -3", "--threads"),
    ("train --threads 0", "--threads"),
    ("""train --recipe-json '{"n_layers": 7}'""", "n_layers"),
    ("""train --recipe-json '{"d_model": 30, "n_head": 4}'""", "not divisible"),
    ("""train --recipe-json '{"n_layer": 0}'""", "n_layer"),
    ("""train --recipe-json '{"seed": -1}'""", "seed"),
    ("train --recipe-json '[1, 2]'", "not an object"),
    ("train --recipe-json '{n_layer: 2}'", "not valid JSON"),
    ("compare --strengths abc", "--strengths"),
    ("compare --strengths -1", "--strengths"),
    ("compare --strengths 1e-4,0", "--strengths"),
    ("compare --strengths ,", "--strengths"),
    ("compare --methods ,", "no unlearning method"),
    ("compare --methods npo,bogus", "'bogus'"),
    ("compare --steps 0", "--steps"),
    ("study pareto --settings-json nope", "not valid JSON"),
    ("study pareto --settings-json [1]", "not an object"),
    ("""study pareto --settings-json '{"seeds": []}'""", "seeds"),
    ("""study pareto --settings-json '{"seeds": [-1]}'""", "seeds"),
    ("""study pareto --settings-json '{"variants": ["Nope"]}'""", "unknown variant"),
    ("""study pareto --settings-json '{"steps": 0}'""", "steps"),
    ("""study pareto --settings-json '{"grid_points": -1}'""", "grid_points"),
    ("""study pareto --settings-json '{"bogus": 1}'""", "valid fields"),
    ("""study deletion-rate --settings-json '{"rates": [1.5]}'""", "rates"),
    ("""study stability --settings-json '{"model_seeds": []}'""", "model_seeds"),
    ("""study difficulty --settings-json '{"cure_variant": "Nope"}'""", "unknown variant"),
    ("study stability --request default", "takes no --request"),
    ("study nope", "invalid choice"),
    ("app --port 70000", "--port"),
    ("app --port 0", "--port"),
    ("app --host localhost", "--host 'localhost' is not an IP address"),
    ("forget --profile compact", "--profile (CURE_PROFILE) applies to a user's checkpoint"),
    ("evaluate --dtype bf16", "--dtype (CURE_DTYPE) applies to a user's checkpoint"),
    ("unlearn --method cure --lora --row-rule reset", "--row-rule reset"),
    ("compare --methods npo,cure --lora --row-rule reset", "--row-rule reset"),
    ("bogus", "invalid choice"),
]


# (CURE_* variables, argv, expected): every variable is checked before any work, flags or not
ENVIRONMENT_CASES: list[tuple[dict[str, str], list[str], str]] = [
    ({"CURE_MODEL": "/nope"}, ["forget"], "CURE_MODEL: no folder at /nope"),
    ({"CURE_RECIPE": '{"n_layer": 0}'}, ["train"], "CURE_RECIPE: invalid recipe: n_layer"),
    ({"CURE_RECIPE": "{n_layer: 2}"}, ["train"], "CURE_RECIPE: --recipe-json is not valid JSON"),
    ({"CURE_HOST": "example.org"}, ["app"], "CURE_HOST 'example.org' is not an IP address"),
    ({"CURE_DATA": "/nope"}, ["data"], "CURE_DATA=/nope does not exist"),
    ({"CURE_PROFILE": "e2urec"}, ["forget"], "--profile (CURE_PROFILE) applies to a user's checkpoint"),
    ({"CURE_MODEL_ROOTS": "/nope"}, ["app"], "CURE_MODEL_ROOTS names /nope, which is not a folder"),
]


@pytest.mark.parametrize(
    ("env", "argv", "expected"), ENVIRONMENT_CASES, ids=[" ".join(e) for e, _, _ in ENVIRONMENT_CASES]
)
def test_bad_environment_is_one_line(capsys, isolated_cache, monkeypatch, grouplens_dir, env, argv, expected):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, _, err = run(capsys, [*argv, "--data", grouplens_dir])
    assert_one_error_line(code, err, expected)
    assert written(isolated_cache) == []


@pytest.mark.parametrize(("command", "expected"), CASES, ids=[command for command, _ in CASES])
def test_bad_input_is_one_line(capsys, isolated_cache, grouplens_dir, command, expected):
    argv = shlex.split(command)
    extra = ["--data", grouplens_dir] if argv[0] in HELP and argv != ["study", "nope"] else []
    code, _, err = run(capsys, argv + extra)
    assert_one_error_line(code, err, expected)
    assert written(isolated_cache) == []


def _damage(folder, name, lines=None, append=None):
    path = folder / name
    rows = path.read_text(encoding="latin-1").splitlines()
    if lines:
        for i, line in lines.items():
            rows[i] = line
    if append:
        rows += append
    path.write_text("\n".join(rows) + "\n", encoding="latin-1")


DATA_CASES = {
    "duplicated": (lambda f: _damage(f, "u.data", append=(f / "u.data").read_text().splitlines()), "u.data row"),
    "rating 99": (lambda f: _damage(f, "u.data", {3: "1\t2\t99\t1000"}), "u.data row 4 has a rating outside"),
    "empty rating": (
        lambda f: _damage(f, "u.data", {0: "1\t2\t\t1000"}),
        "u.data row 1 has an empty or non-numeric rating",
    ),
    "negative timestamp": (lambda f: _damage(f, "u.data", {5: "1\t3\t4\t-5"}), "u.data row 6 has a negative timestamp"),
    "blank user": (lambda f: _damage(f, "u.data", {2: " \t3\t4\t100"}), "blank user or item id"),
    "u.user columns": (lambda f: (f / "u.user").write_text("1|24|M\n2|30|F\n"), "u.user has 3 column(s)"),
    "genre flag": (
        lambda f: _damage(
            f, "u.item", {1: (f / "u.item").read_text(encoding="latin-1").splitlines()[1].rsplit("|", 1)[0] + "|x"}
        ),
        "u.item row 2 has a genre flag",
    ),
    "no u.item": (lambda f: (f / "u.item").unlink(), "no u.item"),
}


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_bad_data_is_one_line(capsys, isolated_cache, tmp_path, synthetic, case):
    folder = write_grouplens(tmp_path / "ml", synthetic)
    damage, expected = DATA_CASES[case]
    damage(folder)
    code, _, err = run(capsys, ["data", "--data", str(folder)])
    assert_one_error_line(code, err, expected)
    assert written(isolated_cache) == []


def test_corrupt_zip_member_is_one_line(capsys, tmp_path, synthetic):
    folder = write_grouplens(tmp_path / "ml", synthetic)
    archive = tmp_path / "ml.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for name in ("u.data", "u.item"):
            z.write(folder / name, f"ml-100k/{name}")
    raw = bytearray(archive.read_bytes())
    start = raw.index(b"u.data") + len(b"u.data") + 40  # inside the compressed u.data bytes
    raw[start : start + 200] = bytes(200)
    archive.write_bytes(bytes(raw))
    code, _, err = run(capsys, ["data", "--data", str(archive)])
    assert_one_error_line(code, err, "damaged")


@pytest.mark.parametrize("target", ["folder", "under a file", "read-only"])
@pytest.mark.parametrize(
    "argv",
    [
        ["report", "--out"],
        ["groups", "--csv"],
        ["compare", "--out"],
        ["circuit", "--export", "json"],
        ["forget", "--export", "tallrec"],
    ],
)
def test_unwritable_output_is_refused_before_work(capsys, isolated_cache, tmp_path, monkeypatch, argv, target):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    locked = tmp_path / "locked"
    locked.mkdir()
    folder_output = argv[0] in ("compare", "forget")
    path = {
        "folder": a_file if folder_output else tmp_path,
        "under a file": a_file / "out.csv",
        "read-only": locked / "out.csv",
    }[target]
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode, **kw: False if str(p).startswith(str(locked)) else real_access(p, mode, **kw)
    )
    code, _, err = run(capsys, [*argv, str(path)])
    assert_one_error_line(
        code, err, {"folder": "is a", "under a file": "which is a file", "read-only": "read-only"}[target]
    )
    assert written(isolated_cache) == []


@pytest.mark.parametrize("command", [None, *HELP])
def test_every_help_works(capsys, command):
    code, out, err = run(capsys, ([command] if command else []) + ["--help"])
    assert code == 0 and "usage: cure" in out and err == ""


def test_library_warning_is_one_line(capsys, monkeypatch, grouplens_dir):
    import warnings

    from cure_core.cli import commands

    monkeypatch.setattr(
        commands.printers, "print_summary", lambda *a: warnings.warn("something odd\non two lines", stacklevel=1)
    )
    code, _, err = run(capsys, ["data", "--data", grouplens_dir])
    assert code == 0 and err.strip() == "warning: something odd on two lines"


def test_bad_input_cases_cover_every_command():
    assert {shlex.split(command)[0] for command, _ in CASES} >= set(HELP) - {"data", "report"}
    assert len(CASES) + len(DATA_CASES) >= 60
