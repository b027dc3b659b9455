"""Attribution and faithfulness over several processes (``torch.distributed``), equal to one.

The prompt batches are dealt to the processes round-robin, whole batches only: rank r runs
batches r, r + size, r + 2·size, … (a batch is the unit whose mean ``batch_scores`` keeps, so
splitting one would change it). Each rank scores its batches exactly as one process does
(:func:`analysis.attribution.score_batches`, :func:`analysis.faithfulness.measure_batches`);
the per-batch results — float64 edge-score sums, metric values, faithfulness sums — are
all-gathered, put back in the one-process batch order, and assembled by the same code
(:func:`~analysis.attribution.assemble`, :func:`~analysis.faithfulness.combine`). The sums
over batches are therefore the one-process additions in the one-process order: no all-reduce,
whose order of addition would differ, is needed, and every rank ends with the whole result.

The gather pickles the per-batch arrays (``all_gather_object``; on NCCL through the current
CUDA device). Every rank then holds what one process holds: ``batch_scores`` is
``n_batches × n_src × n_dst`` float64 (16 × 1,057 × 3,105 × 8 B ≈ 420 MB for a 32-layer,
32-head model and 512 prompts in batches of 32).

The process group itself is the application's to start (``cure_core.runtime``); without
one, or with one process, these functions are the one-process functions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch.distributed as dist

from analysis.attribution import Attribution, Method, assemble, checked_steps, score_batches
from analysis.circuit import Circuit
from analysis.faithfulness import Faithfulness, combine, measure_batches
from analysis.hooks import Engine, graph_shape
from analysis.prompts import Metric, PromptBatch

T = TypeVar("T")


def grouped() -> bool:
    """Whether a default process group exists (torch builds without ``torch.distributed`` never have one)."""
    return dist.is_available() and dist.is_initialized()


def world() -> tuple[int, int]:
    """``(rank, size)`` of the default process group, ``(0, 1)`` when none is initialised."""
    return (dist.get_rank(), dist.get_world_size()) if grouped() else (0, 1)


def shard(n_batches: int, rank: int, size: int) -> list[int]:
    """The batch indices rank ``rank`` of ``size`` runs: every ``size``-th from ``rank``, so the
    ranks' loads differ by one batch at most."""
    if size < 1 or not 0 <= rank < size:
        raise ValueError(f"rank {rank} is not in a world of {size}")
    return list(range(rank, n_batches, size))


def unshard(per_rank: Sequence[Sequence[T]], n_batches: int) -> list[T]:
    """The inverse of :func:`shard`: ``per_rank[r]`` holds rank r's results in its own order;
    the answer lists them in batch order."""
    size = len(per_rank)
    out: list[Any] = [None] * n_batches
    for rank, items in enumerate(per_rank):
        indices = shard(n_batches, rank, size)
        if len(items) != len(indices):
            raise ValueError(f"rank {rank} returned {len(items)} results for {len(indices)} batches")
        for index, item in zip(indices, items, strict=True):
            out[index] = item
    return out


def gather_in_order(mine: list[T], n_batches: int) -> list[T]:
    """Every rank's results of its :func:`shard`, all-gathered, in batch order. (With a group,
    even of one process, the gather runs: a one-GPU machine can check the NCCL path.)"""
    if not grouped():
        return list(mine)
    per_rank: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(per_rank, mine)
    return unshard(per_rank, n_batches)


def attribute_sharded(
    bridge: Any,
    batches: Sequence[PromptBatch],
    metric: Metric,
    method: Method = "eap",
    steps: int = 5,
    settings: dict[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
    max_memory: int | None = None,
    engine: Engine = "projected",
) -> Attribution:
    """:func:`analysis.attribution.attribute` with this rank's :func:`shard` of ``batches``:
    the same :class:`Attribution` on every rank. ``progress`` counts this rank's prompts."""
    steps = checked_steps(method, steps)
    rank, size = world()
    mine = [batches[i] for i in shard(len(batches), rank, size)]
    parts = gather_in_order(score_batches(bridge, mine, metric, steps, progress, max_memory, engine), len(batches))
    return assemble(graph_shape(bridge), method, steps, parts, settings)


def faithfulness_sharded(
    bridge: Any,
    batches: Sequence[PromptBatch],
    metric: Metric,
    circuits: Sequence[Circuit],
    progress: Callable[[int], None] | None = None,
) -> list[Faithfulness]:
    """:func:`analysis.faithfulness.faithfulness_curve` with this rank's :func:`shard` of
    ``batches``: the same values on every rank. ``progress`` counts this rank's prompts."""
    rank, size = world()
    mine = [batches[i] for i in shard(len(batches), rank, size)]
    return combine(circuits, gather_in_order(measure_batches(bridge, mine, metric, circuits, progress), len(batches)))
