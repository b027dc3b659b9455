"""run_side_by_side: jobs in spawned workers, summed progress, failures, cancellation and the
script ``__main__`` that workers must not run again."""

from __future__ import annotations

import os
import sys
import types
from functools import partial

import pytest
from side_by_side_jobs import count_and_write, crash, fail_with_cure_error, wait_until_stopped

from cure_core.errors import CureError
from cure_core.model.workers import run_side_by_side


def running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_jobs_write_their_results_and_progress_sums_to_their_totals(tmp_path, capfd):
    calls = []
    jobs = [partial(count_and_write, tmp_path / "a.txt", 3), partial(count_and_write, tmp_path / "b.txt", 5)]
    run_side_by_side(jobs, lambda done, total, info: calls.append((done, total, info)), quiet=True)

    assert (tmp_path / "a.txt").read_text() == "a:3"
    assert (tmp_path / "b.txt").read_text() == "b:5"
    assert calls[-1] == (8, 8, {"job": "a", "step": 3})  # the first job's info
    assert all(0 <= done <= total <= 8 for done, total, _ in calls)
    assert [done for done, _, _ in calls] == sorted(done for done, _, _ in calls)
    assert capfd.readouterr() == ("", "")  # quiet: neither worker's stdout nor stderr


def test_workers_do_not_run_a_script_main_again(tmp_path, monkeypatch):
    """A Streamlit page is ``__main__`` with a ``__file__`` and no spec; spawn would import it in each worker."""
    marker = tmp_path / "page-ran-again"
    page = tmp_path / "page.py"
    page.write_text(f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n")
    script_main = types.ModuleType("__main__")
    script_main.__file__ = str(page)
    monkeypatch.setitem(sys.modules, "__main__", script_main)

    run_side_by_side([partial(count_and_write, tmp_path / f"{n}.txt", 2) for n in "ab"], None, quiet=True)

    assert (tmp_path / "a.txt").exists() and (tmp_path / "b.txt").exists()
    assert not marker.exists()
    assert sys.modules["__main__"] is script_main


def test_a_cure_error_keeps_its_problem_and_fix_and_stops_the_other_job(tmp_path):
    pid_file = tmp_path / "waiter.pid"
    jobs = [
        partial(wait_until_stopped, pid_file),
        partial(fail_with_cure_error, pid_file, "the split has no users", "pick a smaller test fraction"),
    ]
    with pytest.raises(CureError) as caught:
        run_side_by_side(jobs, None, quiet=True)

    assert (caught.value.problem, caught.value.fix) == ("the split has no users", "pick a smaller test fraction")
    assert not running(int(pid_file.read_text()))
    assert not pid_file.with_suffix(".finished").exists()


def test_another_error_names_the_job_and_its_last_line(tmp_path, capfd):
    with pytest.raises(CureError) as caught:
        run_side_by_side([partial(count_and_write, tmp_path / "a.txt", 1), crash], None, quiet=False, names=["a", "b"])

    assert caught.value.problem == "b failed in its worker process: ValueError: bad value 7"
    assert "ValueError: bad value 7" in str(caught.value.__cause__)
    err = capfd.readouterr().err
    assert "Traceback" in err and "ValueError: bad value 7" in err  # not quiet: the worker's stderr is ours


def test_an_exception_in_the_parent_stops_every_worker(tmp_path):
    """What a cancelled Streamlit run does: its StopException is raised from the progress callback."""
    pid_files = [tmp_path / "a.pid", tmp_path / "b.pid"]

    class Cancelled(Exception):
        pass

    def cancel_once_both_run(done, total, info):
        if all(f.exists() for f in pid_files):
            raise Cancelled

    with pytest.raises(Cancelled):
        run_side_by_side([partial(wait_until_stopped, f) for f in pid_files], cancel_once_both_run, quiet=True)

    assert not any(running(int(f.read_text())) for f in pid_files)
    assert not any(f.with_suffix(".finished").exists() for f in pid_files)
