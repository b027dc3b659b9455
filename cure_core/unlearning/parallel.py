"""Data-parallel unlearning: the process group of ``accelerate launch --multi_gpu --num_processes N``.

Every rank draws the same global batch (the run's seed is the same everywhere), scores only its
share of the rows, and the forget and retain gradients are averaged across ranks *separately*,
each with its own all-reduce, before the method combines them. PCGrad, SAGO and CURE's per-group
rules are not linear in (g_f, g_r), so reducing the combined direction (what DDP's backward hook
does with one loss) would not be the single-process update; reducing each objective's gradient
is. The gradients come from ``torch.autograd.grad`` on the flat parameter list, which DDP's
reducer never sees, so the reduction is an explicit ``torch.distributed.all_reduce`` on the flat
vector, weighted by each rank's share of rows: Σ_r (n_r / N)·ḡ_r is exactly the gradient of the
mean loss over the N rows of the global batch. After it every rank holds the same direction and
takes the same Adam step, so the copies never drift apart and no parameters are broadcast.

Only rank 0 probes, evaluates, writes the run to the cache and prints; the others wait for its
report. Nothing here is active in a plain process (no launcher's world size above 1): accelerate
is not even imported then.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from cure_core.errors import CureError

T = TypeVar("T")

WORLD_ENV = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
"""Where a launcher puts the number of processes (torchrun; the MPI launchers accelerate supports)."""


@dataclass(frozen=True)
class DataParallel:
    """This process's place in the group: its rank, the group size and its device."""

    rank: int
    world: int
    device: torch.device
    state: Any  # accelerate.PartialState (shared state: every instance is the same group)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, idx: np.ndarray) -> np.ndarray:
        """This rank's contiguous share of a global batch (sizes differ by at most one row)."""
        return np.array_split(idx, self.world)[self.rank]

    def mean(self, value: torch.Tensor, n_local: int, n_global: int) -> torch.Tensor:
        """Σ_r (n_r / N)·value_r over ranks: the global-batch mean of per-rank means (a new tensor)."""
        out = value.detach() * (n_local / n_global)
        torch.distributed.all_reduce(out, op=torch.distributed.ReduceOp.SUM)
        return out

    def share(self, value: T) -> T:
        """Rank 0's ``value`` on every rank (a picklable object)."""
        from accelerate.utils import broadcast_object_list

        return broadcast_object_list([value], from_process=0)[0]

    @contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (training, attribution: it fills the cache); the rest then
        run it too and find the cache filled."""
        with self.state.main_process_first():
            yield


def launched_world() -> int:
    """The number of processes the launcher started (1 in a plain process)."""
    return max(int(os.environ.get(name) or 1) for name in WORLD_ENV)


def data_parallel() -> DataParallel | None:
    """The process group when launched with more than one process, else ``None``."""
    if launched_world() <= 1:
        if "ACCELERATE_DYNAMO_BACKEND" in os.environ and "MASTER_ADDR" in os.environ:
            # accelerate's simple launcher sets MASTER_ADDR for --num_processes > 1, yet starts one process
            raise CureError(
                "accelerate launch started one process, not --num_processes of them (with --cpu, or without "
                "--multi_gpu, it runs a single process)",
                "launch with `accelerate launch --multi_gpu --num_processes N ...` (torchrun underneath; gloo on "
                "CPUs), or leave out --num_processes for a single process",
            )
        return None
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    # gloo on CPUs (ACCELERATE_USE_CPU, or no CUDA device here); NCCL with one GPU per rank otherwise
    try:
        state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available())
    except ValueError as err:  # e.g. RANK/WORLD_SIZE set by hand without a launcher's MASTER_ADDR
        raise CureError(
            f"cannot join the process group ({str(err).splitlines()[0][:160]})",
            "start the processes with `accelerate launch --multi_gpu --num_processes N ...`, or unset RANK and "
            "WORLD_SIZE to run one process",
        ) from None
    if state.num_processes <= 1:
        return None
    return DataParallel(rank=state.process_index, world=state.num_processes, device=state.device, state=state)


def main_first(parallel: DataParallel | None) -> AbstractContextManager[None]:
    """:meth:`DataParallel.main_first`, or nothing to wait for in a single process."""
    return parallel.main_first() if parallel is not None else nullcontext()


def check_batch_size(batch_size: int, parallel: DataParallel | None) -> None:
    """Refuse a global batch that the processes cannot share equally."""
    if parallel is not None and batch_size % parallel.world:
        raise CureError(
            f"--batch-size {batch_size} is not divisible by the {parallel.world} processes",
            f"give a multiple of {parallel.world} (each process takes batch_size / {parallel.world} rows of it)",
        )


def check_pool(name: str, size: int, batch_size: int, parallel: DataParallel | None) -> None:
    """Refuse a set too small to give every process at least one row per step."""
    if parallel is not None and min(size, batch_size) < parallel.world:
        raise CureError(
            f"the {name} set has {size} rows, fewer than the {parallel.world} processes",
            "run with fewer processes (--num_processes) or on a larger request",
        )
