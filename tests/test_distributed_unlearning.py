"""Data-parallel unlearning (``accelerate launch --multi_gpu --num_processes 2``, gloo on CPUs)
gives the report of one process at the same global batch.

The tiny item model is trained once (one process); each method then runs once in this process
and once as two processes (``--force``: the second run must not read the first from the cache).
The reports agree within float32 rounding: each rank averages its half of the batch and the two
halves are averaged by an all-reduce, a different summation order than one mean over all rows.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from cure_core import cli
from cure_core.errors import CureError
from cure_core.runtime import ONE_PROCESS, ProcessGroup
from cure_core.unlearning.runner import check_batch_size, check_pool
from tests.test_data import write_grouplens
from tests.tiny_recipes import TINY_RECIPE

ROOT = Path(__file__).resolve().parent.parent
RECIPE = TINY_RECIPE.model_dump_json()
RUN_ARGS = ["--steps", "6", "--batch-size", "16", "--json", "--force"]

# Tolerances (single process vs 2 processes, float32 reductions in another order):
AUC_TOL = 1e-3  # an AUC moves in steps of 1/(n_pos·n_neg) ≈ 1e-4 here; allows a few near-tied pairs to swap
LOGLOSS_TOL = 1e-5  # mean of float32 log-losses
REL_TOL = 1e-3  # JSD and L2 to Retrain on the forget set (relative)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, synthetic) -> tuple[Path, str, str]:
    """(cache, data folder, request id): a user request and its Original and Retrain, trained once."""
    cache = tmp_path_factory.mktemp("ddp-cache")
    data = str(write_grouplens(tmp_path_factory.mktemp("ddp-data") / "ml", synthetic))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CURE_CACHE", str(cache))
        out = _cli("forget", "--users", "10%", "--seed", "1", "--data", data, "--recipe-json", RECIPE)
        request = out.split()[1].rstrip(":")
        _cli("train", "--threads", "1", "--data", data, "--recipe-json", RECIPE)
        _cli("train", "--threads", "1", "--retrain", request, "--data", data, "--recipe-json", RECIPE)
    return cache, data, request


@pytest.fixture
def one_thread() -> Iterator[None]:
    """The single-process run on one torch thread, as each of the two processes (the CPUs are shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _cli(*argv: str) -> str:
    """Run ``cure`` in this process; its stdout (fails the test on a non-zero status)."""
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = cli.main(list(argv))
    assert code == 0, (argv, buffer.getvalue())
    return buffer.getvalue()


def _launch(cache: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """``accelerate launch --multi_gpu --num_processes 2 -m cure_core.cli ...`` on CPUs (no config file)."""
    env = {
        **os.environ,
        "CURE_CACHE": str(cache),
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT),
        "CUDA_VISIBLE_DEVICES": "",
        "ACCELERATE_USE_CPU": "true",
    }
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "0",
        "-m",
        "cure_core.cli",
        *argv,
    ]
    return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)


def _scores(report: dict[str, Any]) -> dict[str, float]:
    """Every measured number of a report's model and Retrain (utility per split, MIA per attack)."""
    out: dict[str, float] = {}
    for who in ("model", "retrain"):
        for split in ("test", "forget", "retain"):
            for metric, value in (report[who][split] or {}).items():
                out[f"{who}.{split}.{metric}"] = value
        for attack, value in report[who]["mia"].items():
            out[f"{who}.mia.{attack}"] = value
    return out


@pytest.mark.parametrize("method", ["graddiff", "cure"])
def test_two_processes_report_as_one(trained, one_thread, monkeypatch, method):
    cache, data, request = trained
    monkeypatch.setenv("CURE_CACHE", str(cache))
    argv = ["unlearn", "--method", method, "--request", request, *RUN_ARGS, "--data", data, "--recipe-json", RECIPE]
    single = json.loads(_cli(*argv))
    done = _launch(cache, *argv)
    assert done.returncode == 0, done.stderr[-3000:]
    double = json.loads(done.stdout)  # rank 0 alone prints
    assert double["run"] == single["run"]
    assert double["params_updated"] == single["params_updated"]
    assert double["params_total"] == single["params_total"]
    ours, theirs = _scores(single), _scores(double)
    assert ours.keys() == theirs.keys()
    for key, value in ours.items():
        other = theirs[key]
        if value is None or key.endswith(".n"):
            assert other == value, key
        elif key.endswith(".acc"):
            n = ours[key.replace(".acc", ".n")]
            assert abs(other - value) <= 1 / n + 1e-12, key  # at most one answer whose margin is ≈ 0 flips
        elif key.endswith(".logloss"):
            assert abs(other - value) <= LOGLOSS_TOL, key
        else:  # utility AUCs and MIA AUCs
            assert abs(other - value) <= AUC_TOL, key
    for key in ("jsd_to_retrain", "l2_to_retrain"):
        assert math.isclose(double[key], single[key], rel_tol=REL_TOL, abs_tol=1e-9), key


def test_launch_without_multi_gpu_is_refused(trained, monkeypatch, capsys):
    """accelerate's simple launcher (``--cpu`` or no ``--multi_gpu``) starts one process; say so."""
    cache, data, request = trained
    monkeypatch.setenv("CURE_CACHE", str(cache))
    for name, value in {"ACCELERATE_DYNAMO_BACKEND": "NO", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    code = cli.main(["unlearn", "--method", "npo", "--request", request, "--data", data, "--recipe-json", RECIPE])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--multi_gpu" in err[0] and "fix:" in err[0]


def test_batch_and_sets_must_split_over_the_processes():
    group = ProcessGroup(rank=1, world_size=2, device="cpu")
    check_batch_size(16, group)
    check_batch_size(15, ONE_PROCESS)
    check_pool("forget", 0, 16, ONE_PROCESS)  # nothing to share among processes: no size is refused
    with pytest.raises(CureError, match="not divisible by the 2 processes"):
        check_batch_size(15, group)
    with pytest.raises(CureError, match="fewer than the 2 processes"):
        check_pool("forget", 1, 16, group)
    # an uneven global batch (a set smaller than --batch-size) still splits into every row once
    idx = np.arange(7)
    parts = [ProcessGroup(rank=r, world_size=2, device="cpu").split_rows(idx) for r in range(2)]
    assert np.array_equal(np.concatenate(parts), idx) and [len(p) for p in parts] == [4, 3]
