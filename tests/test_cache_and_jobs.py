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
