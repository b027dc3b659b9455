"""``cure attribute``, ``cure circuit`` and ``cure groups`` under ``torchrun``: the process group,
each process's device, and which process reads and writes what.

``torchrun --nproc_per_node N -m cure_core.cli circuit ...`` starts N copies of the command.
Each one joins the default process group (NCCL when CUDA is present, each process on
``cuda:LOCAL_RANK``; Gloo on CPU), loads the model and its bridge, and runs its shard of every
prompt set (``analysis.distributed``); the results are gathered so that every process holds the
one-process result. Rank 0 alone:

- goes first where the cache may be written before the work starts (a missing model is trained,
  the default request saved; :func:`main_first`), the others then read what it wrote;
- reads a cached attribution and hands it to the others (:func:`from_main`), so all agree on
  whether it is cached even if another program writes the entry meanwhile;
- writes attributions, exports and CSVs, shows progress bars and warnings, and prints the
  output. The others hold the same result in memory and need not read the files back.

Without ``torchrun`` (no ``RANK``/``WORLD_SIZE`` in the environment) nothing here does anything.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

import torch
import torch.distributed as dist

from analysis.distributed import grouped, shard, world
from analysis.prompts import PromptBatch
from cure_core.errors import CureError
from cure_core.progress import Progress, ProgressFn

T = TypeVar("T")


def launched() -> bool:
    """Whether this process was started by ``torchrun`` (or another launcher setting its variables)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def is_main() -> bool:
    """Whether this process prints and writes: rank 0, or the only process."""
    return world()[0] == 0


@contextmanager
def processes() -> Iterator[None]:
    """The default process group for the duration of a command, when launched by ``torchrun``.

    With CUDA, process ``LOCAL_RANK`` takes GPU ``LOCAL_RANK`` and the group uses NCCL; without,
    Gloo. Nothing happens outside a launcher or when a group already exists."""
    if not launched() or grouped():
        yield
        return
    device = None
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise CureError(
                f"torchrun started process {local} on this machine, but it has {torch.cuda.device_count()} GPU(s)",
                f"use --nproc_per_node {torch.cuda.device_count()} or fewer (one process per GPU)",
            )
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    dist.init_process_group("nccl" if device is not None else "gloo", device_id=device)
    try:
        yield
    finally:
        dist.destroy_process_group()


def process_device() -> str | None:
    """The device of this process's bridge: its own GPU under a CUDA process group, else the
    default (``None``)."""
    if grouped() and torch.cuda.is_available():
        return f"cuda:{torch.cuda.current_device()}"
    return None


@contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (training a missing model, saving a request); the others wait
    for it and then run the block themselves, finding what rank 0 wrote."""
    rank = world()[0]
    if grouped() and rank != 0:
        dist.barrier()
    yield
    if grouped() and rank == 0:
        dist.barrier()


def from_main(value: T) -> T:
    """Rank 0's ``value``, on every rank (broadcast whenever a group exists, as in
    ``analysis.distributed.gather_in_order``)."""
    if not grouped():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shard_progress(
    batches: Sequence[PromptBatch], desc: str, callback: ProgressFn | None = None, quiet: bool = False
) -> Progress:
    """A progress bar over this process's shard of ``batches``, drawn by rank 0 only (whose
    shard is never smaller than another's)."""
    rank, size = world()
    total = sum(len(batches[i]) for i in shard(len(batches), rank, size))
    label = f"{desc} (rank 0 of {size})" if size > 1 else desc
    return Progress(total, label, callback, quiet or rank != 0)
