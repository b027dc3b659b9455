"""The runtime of one command (``cure_core.runtime``): what a launcher's environment says, and a
process group of one process giving exactly one process's values through every collective.

The groups of two processes are run end to end by ``test_distributed.py`` (torchrun) and
``test_distributed_unlearning.py`` (accelerate launch)."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.distributed as dist

from cure_core.errors import CureError
from cure_core.runtime import ONE_PROCESS, RANK_ENV, WORLD_ENV, ProcessGroup, joined, launch


@pytest.fixture
def no_launcher(monkeypatch):
    """An environment that no launcher set."""
    for name in (*RANK_ENV, *WORLD_ENV, "ACCELERATE_DYNAMO_BACKEND", "MASTER_ADDR"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_launch_reads_torchrun_and_mpi_variables(no_launcher):
    assert launch() is None
    no_launcher.setenv("WORLD_SIZE", "1")
    assert launch() == (0, 1)
    no_launcher.setenv("RANK", "3")
    no_launcher.setenv("WORLD_SIZE", "4")
    assert launch() == (3, 4)
    no_launcher.delenv("RANK")
    no_launcher.delenv("WORLD_SIZE")
    no_launcher.setenv("OMPI_COMM_WORLD_RANK", "1")
    no_launcher.setenv("OMPI_COMM_WORLD_SIZE", "2")
    assert launch() == (1, 2)


def test_outside_a_launcher_the_command_is_one_process(no_launcher):
    with joined() as runtime:
        assert runtime is ONE_PROCESS
    assert not dist.is_initialized()


def test_accelerate_simple_launcher_is_refused(no_launcher):
    no_launcher.setenv("ACCELERATE_DYNAMO_BACKEND", "NO")
    no_launcher.setenv("MASTER_ADDR", "127.0.0.1")
    with pytest.raises(CureError, match="--multi_gpu"), joined():
        pass


def test_more_processes_than_gpus_are_refused_before_joining(no_launcher):
    """Process 1 of a machine with one GPU: one line, before any process group exists."""
    for name, value in {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}.items():
        no_launcher.setenv(name, value)
    no_launcher.delenv("ACCELERATE_USE_CPU", raising=False)
    no_launcher.setattr(torch.cuda, "is_available", lambda: True)
    no_launcher.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(CureError, match=r"process 1 on this machine, but it has 1 GPU\(s\)"), joined():
        pass
    assert not dist.is_initialized()


def test_one_process_collectives_are_the_identity():
    value = torch.randn(5, requires_grad=True)
    idx = np.arange(7)
    assert ONE_PROCESS.is_main and (ONE_PROCESS.rank, ONE_PROCESS.world_size, ONE_PROCESS.device) == (0, 1, None)
    assert ONE_PROCESS.mean(value, 3, 7) is value
    assert ONE_PROCESS.split_rows(idx) is idx
    box = {"a": 1}
    assert ONE_PROCESS.share(box) is box
    with ONE_PROCESS.main_first():
        pass


@pytest.mark.parametrize("n", [0, 1, 5, 16])
@pytest.mark.parametrize("size", [1, 2, 3, 8])
def test_rows_split_into_every_row_once_rank_0_the_largest(n, size):
    idx = np.arange(100, 100 + n)
    parts = [ProcessGroup(rank=r, world_size=size, device="cpu").split_rows(idx) for r in range(size)]
    assert np.array_equal(np.concatenate(parts), idx)
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1 and sizes[0] == max(sizes)
    assert not ProcessGroup(rank=1, world_size=2, device="cpu").is_main


GROUP_OF_ONE = """
import pickle, sys
import numpy as np
import torch
import torch.distributed as dist
from cure_core.runtime import ONE_PROCESS, joined

torch.manual_seed(0)
value = torch.randn(1000, dtype=torch.float32) * 1e3
idx = np.arange(9)
with joined() as group:
    with group.main_first():
        out = {
            "group": (type(group).__name__, group.rank, group.world_size, group.device, dist.is_initialized()),
            "mean": (group.mean(value, 9, 9), ONE_PROCESS.mean(value, 9, 9)),
            "share": (group.share({"k": [1.5, None]}), {"k": [1.5, None]}),
            "rows": (group.split_rows(idx), ONE_PROCESS.split_rows(idx)),
        }
out["left"] = not dist.is_initialized()
sys.stdout.buffer.write(pickle.dumps(out))
"""


def test_a_group_of_one_process_gives_one_process_values_bit_for_bit():
    """A launcher's single process (``torchrun --nproc_per_node 1``'s variables, Gloo on the CPU)
    joins a group of one; every collective runs and changes nothing: the all-reduced mean is the
    tensor itself, bit for bit. The group is left at the end. (A process of its own, so that no
    process group or launcher state outlives the test.)"""
    env = {k: v for k, v in os.environ.items() if k not in (*RANK_ENV, *WORLD_ENV)}
    env |= {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"}
    env |= {"MASTER_PORT": "0", "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", GROUP_OF_ONE], env=env, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    out = pickle.loads(done.stdout)
    assert out["group"] == ("ProcessGroup", 0, 1, "cpu", True)
    assert out["left"]
    grouped, alone = out["mean"]
    assert grouped.dtype == alone.dtype and torch.equal(grouped, alone)
    assert out["share"][0] == out["share"][1]
    assert np.array_equal(*out["rows"])
