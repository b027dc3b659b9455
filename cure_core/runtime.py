"""Where this process stands among the processes of one command: :class:`Runtime`.

A command runs as one process (:data:`ONE_PROCESS`) or as one of N processes that a launcher
started: ``torchrun --nproc_per_node N -m cure_core.cli attribute|circuit|groups ...`` or
``accelerate launch --multi_gpu --num_processes N -m cure_core.cli unlearn ...`` (torchrun
underneath; an MPI launcher for several CPUs works too). The command line joins the process
group once (:func:`joined`) and hands the :class:`ProcessGroup` to the code that needs it; the
rest of the code asks the runtime, never the environment or ``torch.distributed``.

Each process of a group has its own device: GPU ``LOCAL_RANK`` with NCCL, or the CPU with Gloo
(no CUDA, or ``ACCELERATE_USE_CPU``). Rank 0 alone:

- goes first where the cache may be written before the work starts (a missing model is trained,
  the default request saved; :meth:`Runtime.main_first`), the others then read what it wrote;
- reads a cached entry and hands it to the others (:meth:`Runtime.share`), so all agree on
  whether it is cached even if another program writes the entry meanwhile;
- writes results, shows progress bars and warnings, and prints the output.

How the work is split is the callers' choice: attribution and faithfulness deal whole prompt
batches round-robin (``analysis.distributed``); data-parallel unlearning gives each process a
contiguous share of every global batch (:meth:`Runtime.split_rows`) and averages the gradients
(:meth:`Runtime.mean`). A group of one process runs every collective (a one-GPU machine can
check the NCCL path); its numbers are one process's.

Nothing here imports torch until a launcher's process joins its group: the command line reads
:func:`launch` before any argument is checked.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from cure_core.errors import CureError

if TYPE_CHECKING:
    import torch

T = TypeVar("T")

RANK_ENV = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")
WORLD_ENV = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
"""Where a launcher puts this process's rank and the number of processes (torchrun; the MPI
launchers accelerate supports)."""


@dataclass(frozen=True)
class Runtime:
    """One process: rank 0 of 1 on each model's default device (``device`` ``None``). Every
    collective is the identity; :class:`ProcessGroup` is the same interface over N processes."""

    rank: int = 0
    world_size: int = 1
    device: str | None = None

    @property
    def is_main(self) -> bool:
        """Whether this process prints and writes: rank 0, or the only process."""
        return self.rank == 0

    def main_first(self) -> AbstractContextManager[None]:
        """A block that rank 0 runs first and the others after it (here: just the block)."""
        return nullcontext()

    def share(self, value: T) -> T:
        """Rank 0's ``value`` (a picklable object) on every process."""
        return value

    def mean(self, value: torch.Tensor, n_local: int, n_global: int) -> torch.Tensor:
        """Σ_r (n_r / N)·value_r over processes: the global-batch mean of each process's mean
        over its ``n_local`` of the ``n_global`` rows."""
        return value

    def split_rows(self, idx: np.ndarray) -> np.ndarray:
        """This process's contiguous share of the rows of a global batch."""
        return idx


ONE_PROCESS = Runtime()


@dataclass(frozen=True)
class ProcessGroup(Runtime):
    """This process's place in the default ``torch.distributed`` group: its rank, the number of
    processes and its device (``cuda:LOCAL_RANK`` or ``cpu``)."""

    @contextmanager
    def main_first(self) -> Iterator[None]:
        import torch.distributed as dist

        if not self.is_main:
            dist.barrier()
        yield
        if self.is_main:
            dist.barrier()

    def share(self, value: T) -> T:
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def mean(self, value: torch.Tensor, n_local: int, n_global: int) -> torch.Tensor:
        """See :meth:`Runtime.mean`: one all-reduce of ``value`` weighted by this process's share
        of the rows (a new, detached tensor)."""
        import torch.distributed as dist

        out = value.detach() * (n_local / n_global)
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    def split_rows(self, idx: np.ndarray) -> np.ndarray:
        """See :meth:`Runtime.split_rows`: shares differ by at most one row, rank 0's the largest."""
        return np.array_split(idx, self.world_size)[self.rank]


def launch() -> tuple[int, int] | None:
    """``(rank, number of processes)`` as a launcher set them, ``None`` in a process that no
    launcher started (read without importing torch)."""
    sizes = [int(os.environ[name]) for name in WORLD_ENV if os.environ.get(name)]
    if not sizes:
        return None
    rank = next((int(os.environ[name]) for name in RANK_ENV if os.environ.get(name)), 0)
    return rank, max(sizes)


@contextmanager
def joined() -> Iterator[Runtime]:
    """This process's runtime for the duration of a command: :data:`ONE_PROCESS` outside a
    launcher; inside one, the default process group, joined here (and left at the end) unless
    it already exists. A process that cannot join is refused in one line."""
    if launch() is None:
        _refuse_a_single_launched_process()
        yield ONE_PROCESS
        return
    import torch
    import torch.distributed as dist
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    cpu = parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available()
    options = {} if cpu else {"device_id": _own_gpu()}
    existed = dist.is_available() and dist.is_initialized()
    try:
        state = PartialState(cpu=cpu, **options)
    except ValueError as err:  # e.g. RANK/WORLD_SIZE set by hand without a launcher's MASTER_ADDR
        raise CureError(
            f"cannot join the process group ({str(err).splitlines()[0][:160]})",
            "start the processes with `torchrun --nproc_per_node N ...` (attribute, circuit, groups) or "
            "`accelerate launch --multi_gpu --num_processes N ...` (unlearn), or unset RANK and WORLD_SIZE to run "
            "one process",
        ) from None
    if not dist.is_initialized():  # a launcher's single process that needs no group
        yield ONE_PROCESS
        return
    # "cpu", not accelerate's "cpu:0": a bridge booted on "cpu:0" rounds differently from one process's
    device = "cpu" if state.device.type == "cpu" else str(state.device)
    try:
        yield ProcessGroup(rank=state.process_index, world_size=state.num_processes, device=device)
    finally:
        if not existed:
            dist.destroy_process_group()


def _own_gpu() -> torch.device:
    """GPU ``LOCAL_RANK`` (this process's on its machine), made the current CUDA device."""
    import torch

    local, count = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
    if local >= count:
        raise CureError(
            f"the launcher started process {local} on this machine, but it has {count} GPU(s)",
            f"start {count} process(es) or fewer per machine (--nproc_per_node, --num_processes): one per GPU",
        )
    torch.cuda.set_device(local)
    return torch.device("cuda", local)


def _refuse_a_single_launched_process() -> None:
    """accelerate's simple launcher (``--cpu``, or no ``--multi_gpu``) sets ``MASTER_ADDR`` for
    ``--num_processes`` above 1, yet starts one process: refuse it rather than run alone."""
    if "ACCELERATE_DYNAMO_BACKEND" in os.environ and "MASTER_ADDR" in os.environ:
        raise CureError(
            "accelerate launch started one process, not --num_processes of them (with --cpu, or without "
            "--multi_gpu, it runs a single process)",
            "launch with `accelerate launch --multi_gpu --num_processes N ...` (torchrun underneath; gloo on "
            "CPUs), or leave out --num_processes for a single process",
        )
