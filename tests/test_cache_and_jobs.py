import time

import pytest

from cure_core.cache import atomic_directory, atomic_write_json
from cure_core.errors import CureError
from cure_core.jobs import BackgroundJob


def test_failed_directory_write_keeps_the_old_entry(tmp_path):
    entry = tmp_path / "model"
    with atomic_directory(entry) as tmp:
        (tmp / "weights").write_text("old")
    with pytest.raises(RuntimeError), atomic_directory(entry) as tmp:
        (tmp / "weights").write_text("half")
        raise RuntimeError("crash mid-write")
    assert (entry / "weights").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporary leftovers


def test_directory_replace_and_json_write(tmp_path):
    entry = tmp_path / "model"
    for version in ("1", "2"):
        with atomic_directory(entry) as tmp:
            (tmp / "v").write_text(version)
    assert (entry / "v").read_text() == "2"
    atomic_write_json(tmp_path / "x.json", {"a": 1})
    assert (tmp_path / "x.json").read_text().strip() == '{\n  "a": 1\n}'


def test_background_job_reports_progress_and_result():
    def work(progress):
        for i in range(3):
            progress(i + 1, 3, {"step": i})
        return "done"

    job = BackgroundJob("ok", work)
    job.join(5)
    assert job.finished and job.result == "done" and job.fraction == 1.0 and job.error is None


def test_background_job_can_be_cancelled_and_shows_errors():
    def slow(progress):
        for i in range(1000):
            progress(i, 1000, {})
            time.sleep(0.01)

    job = BackgroundJob("slow", slow)
    job.cancel()
    job.join(5)
    assert job.finished and "cancelled" in job.error

    def bad(progress):
        raise CureError("no data", "give data")

    failing = BackgroundJob("bad", bad)
    failing.join(5)
    assert failing.error == "no data — fix: give data"


def test_atomic_writes_sync_and_give_ordinary_modes(tmp_path, monkeypatch):
    """One atomic write for the cache and the exports: fsynced, mode 0666/0777 less the umask
    (not mkstemp's 0600 / mkdtemp's 0700), nothing left behind when the write fails."""
    import os

    from analysis.io import atomic_write, atomic_write_bytes, default_mode

    umask = os.umask(0o022)
    os.umask(umask)
    assert default_mode() == 0o666 & ~umask and default_mode(directory=True) == 0o777 & ~umask
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    atomic_write_bytes(tmp_path / "a.bin", b"one")
    assert (tmp_path / "a.bin").read_bytes() == b"one" and synced
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == default_mode()

    def crash(path):
        path.write_bytes(b"half")
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "a.bin", crash)
    assert (tmp_path / "a.bin").read_bytes() == b"one" and [p.name for p in tmp_path.iterdir()] == ["a.bin"]
    with atomic_directory(tmp_path / "entry") as tmp:
        (tmp / "f").write_text("x")
    assert (tmp_path / "entry").stat().st_mode & 0o777 == default_mode(directory=True)


def test_circuit_export_is_the_same_atomic_write(tmp_path):
    from analysis.export import export
    from analysis.io import default_mode
    from tests.test_circuit import _doc

    export(_doc(), "csv", tmp_path / "c.csv")
    assert (tmp_path / "c.csv").stat().st_mode & 0o777 == default_mode()
