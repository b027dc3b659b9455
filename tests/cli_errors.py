"""How the CLI's bad-input tests run a command and check its one error line and the cache."""

from __future__ import annotations

from cure_core import cli


def run(capsys, argv):
    """``cure ARGV``'s exit status, stdout and stderr."""
    code = cli.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def written(cache) -> list[str]:
    """The files under ``cache`` (the shared ML-100K downloads left out)."""
    return sorted(
        str(p.relative_to(cache))
        for p in cache.rglob("*")
        if p.is_file() and "downloads" not in p.relative_to(cache).parts
    )


def assert_one_error_line(code: int, err: str, expected: str) -> None:
    """Exit status 2 and one line ``error: ... — fix: ...`` naming ``expected``, no traceback."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and " — fix: " in lines[0], err
    assert expected in lines[0], err
    assert "Traceback" not in err
