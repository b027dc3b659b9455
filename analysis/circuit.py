"""Circuits: sets of edges chosen from attribution scores, pruned to input→logits paths.

A :class:`Circuit` is a boolean ``[n_src, n_dst]`` edge mask over a :class:`GraphShape`.
Selection rules (method.md §5) rank edges by |score|: top-n, threshold, cumulative share of
the total |score|, and greedy growth from the logits (an edge may join only when its
destination's module is already in the circuit).

Shared key/value inputs (grouped-query attention, :attr:`GraphShape.dst_readers`): a K/V input
of key/value head g is read by every query head of its group, so it is *alive* — reachable
from the input through, and reaching the logits through — whenever any of its reader heads
is. Pruning keeps an edge into it as long as one reader lies on an input→logits path, and
greedy growth opens it as soon as any reader head joins the circuit.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numpy as np

from analysis.errors import AnalysisInputError
from analysis.graph import GraphShape

Selection = Literal["top-n", "threshold", "share", "greedy"]
SELECTIONS: tuple[Selection, ...] = ("top-n", "threshold", "share", "greedy")


@dataclass(frozen=True)
class Circuit:
    shape: GraphShape
    edges: np.ndarray  # [n_src, n_dst] bool

    @property
    def n_edges(self) -> int:
        return int(self.edges.sum())

    def edge_names(self) -> list[str]:
        return [self.shape.edge_name(s, t) for s, t in zip(*np.nonzero(self.edges), strict=True)]

    def nodes(self) -> set[str]:
        """Modules touched by an edge, by name (``input``, ``a0.h1``, ``m2``, ``logits``).

        The destination of an edge counts its reader: for a shared K/V input, the reader heads
        that are sources of some edge of the circuit, or the first reader when none is.
        """
        shape = self.shape
        names = {shape.src_names[s] for s in self._sources}
        for t in np.flatnonzero(self.edges.any(axis=0)):
            readers = self._readers(int(t))
            names |= {shape.src_names[r] for r in readers} if readers else {"logits"}
        return names

    def target_module(self, dst: int) -> int:
        """The module that names destination ``dst`` in this circuit (``-1`` for the logits): its
        reader, or for a shared K/V input the first reader head that is a source of some edge
        of the circuit (the first reader when none is). Any reader names the same K/V input."""
        readers = self._readers(dst)
        return readers[0] if readers else -1

    @cached_property
    def _sources(self) -> frozenset[int]:
        return frozenset(np.flatnonzero(self.edges.any(axis=1)).tolist())

    def _readers(self, dst: int) -> list[int]:
        readers = np.flatnonzero(self.shape.dst_readers[dst]).tolist()
        return [r for r in readers if r in self._sources] or readers[:1]

    @classmethod
    def full(cls, shape: GraphShape) -> Circuit:
        return cls(shape, shape.real_edge_mask())

    @classmethod
    def empty(cls, shape: GraphShape) -> Circuit:
        return cls(shape, np.zeros((shape.n_src, shape.n_dst), dtype=bool))

    @classmethod
    def from_edge_names(cls, shape: GraphShape, names: list[str]) -> Circuit:
        edges = np.zeros((shape.n_src, shape.n_dst), dtype=bool)
        for name in names:
            edges[shape.parse_edge(name)] = True
        return cls(shape, edges)


def _ranked(shape: GraphShape, scores: np.ndarray) -> np.ndarray:
    """Flat indices of the real edges by decreasing |score| (ties broken by index, stable)."""
    magnitude = np.where(shape.real_edge_mask(), np.abs(scores), -1.0).ravel()
    order = np.argsort(-magnitude, kind="stable")
    return order[: shape.n_edges]


def _from_flat(shape: GraphShape, flat: np.ndarray) -> Circuit:
    edges = np.zeros(shape.n_src * shape.n_dst, dtype=bool)
    edges[flat] = True
    return Circuit(shape, edges.reshape(shape.n_src, shape.n_dst))


def top_n(shape: GraphShape, scores: np.ndarray, n: int) -> Circuit:
    return _from_flat(shape, _ranked(shape, scores)[: max(0, n)])


def by_threshold(shape: GraphShape, scores: np.ndarray, threshold: float) -> Circuit:
    return Circuit(shape, shape.real_edge_mask() & (np.abs(scores) >= threshold))


def by_share(shape: GraphShape, scores: np.ndarray, share: float) -> Circuit:
    """The fewest top edges whose |scores| add up to ``share`` of the total |score|."""
    ranked = _ranked(shape, scores)
    return _from_flat(shape, ranked[: share_count(np.abs(scores).ravel()[ranked], share)])


def share_count(ranked: np.ndarray, share: float) -> int:
    """The cumulative-share rule, for edges here and for modules in ``cure_core.groups``: how
    many leading values of ``ranked`` (non-negative, in decreasing order) are the fewest that add
    up to ``share`` of their total. 0 when ``share`` is 0 or every value is 0; all of them for
    share 1 (up to a relative 1e-12, so rounding in the cumulative sum cannot add one more)."""
    if not 0.0 <= share <= 1.0:
        raise AnalysisInputError(f"share must lie in [0, 1], got {share}", "give a share between 0 and 1")
    total = float(ranked.sum())
    if share == 0.0 or total == 0.0:
        return 0
    return min(int(np.searchsorted(np.cumsum(ranked), share * total * (1 - 1e-12)) + 1), len(ranked))


def greedy(shape: GraphShape, scores: np.ndarray, n: int) -> Circuit:
    """Grow from the logits: repeatedly add the highest-|score| edge whose destination is read by
    a module already in the circuit (or is the logits), so every edge lies on a path to the
    logits. A module joining opens every input it reads, shared K/V inputs included."""
    real = shape.real_edge_mask()
    reads = _inputs_read(shape)
    heap: list[tuple[float, int, int]] = []
    opened = np.zeros(shape.n_dst, dtype=bool)

    def open_destinations(dsts: np.ndarray) -> None:
        for t in dsts[~opened[dsts]]:
            opened[t] = True
            for s in np.flatnonzero(real[:, t]):
                heapq.heappush(heap, (-abs(float(scores[s, t])), int(s), int(t)))

    edges = np.zeros_like(real)
    in_circuit = np.zeros(shape.n_src, dtype=bool)
    open_destinations(np.array([shape.logits_dst]))
    count = 0
    while heap and count < n:
        _, s, t = heapq.heappop(heap)
        edges[s, t] = True
        count += 1
        if s > 0 and not in_circuit[s]:
            in_circuit[s] = True
            open_destinations(reads[s])
    return Circuit(shape, edges)


def _inputs_read(shape: GraphShape) -> list[np.ndarray]:
    """Per source index, the destination indices that module reads (its own q, k, v or MLP
    input, and any shared K/V input of its key/value head); empty for ``input``."""
    return [np.flatnonzero(shape.dst_readers[:, m]) for m in range(shape.n_src)]


def prune(circuit: Circuit) -> Circuit:
    """Keep only edges on a path from ``input`` to ``logits`` inside the circuit.

    Source indices are in computation order, so one forward sweep finds the modules reachable
    from the input (through any input they read, shared K/V inputs included) and one backward
    sweep those that reach the logits; a destination reaches the logits when it is the logits
    or when any module reading it does.
    """
    shape, edges = circuit.shape, circuit.edges
    reads = _inputs_read(shape)
    from_input = np.zeros(shape.n_src, dtype=bool)
    from_input[0] = True
    for module in range(1, shape.n_src):
        incoming = edges[:, reads[module]]
        from_input[module] = bool((incoming.any(axis=1) & from_input).any())
    to_logits = np.zeros(shape.n_src, dtype=bool)
    dst_reaches = np.zeros(shape.n_dst, dtype=bool)
    dst_reaches[shape.logits_dst] = True
    for module in range(shape.n_src - 1, -1, -1):  # every reader of a destination comes after its sources
        to_logits[module] = bool((edges[module] & dst_reaches).any())
        if to_logits[module]:
            dst_reaches[reads[module]] = True
    keep = edges & from_input[:, None] & dst_reaches[None, :]
    return Circuit(shape, keep)


def select(shape: GraphShape, scores: np.ndarray, how: Selection, value: float, prune_dangling: bool = True) -> Circuit:
    """One entry point for the four selection rules; ``value`` is n, a threshold or a share."""
    if how == "top-n":
        circuit = top_n(shape, scores, int(value))
    elif how == "threshold":
        circuit = by_threshold(shape, scores, float(value))
    elif how == "share":
        circuit = by_share(shape, scores, float(value))
    elif how == "greedy":
        circuit = greedy(shape, scores, int(value))
    else:
        raise AnalysisInputError(f"unknown selection {how!r}", f"use one of {', '.join(SELECTIONS)}")
    return prune(circuit) if prune_dangling else circuit


def size_curve(shape: GraphShape, scores: np.ndarray, sizes: list[int]) -> list[Circuit]:
    """The pruned top-n circuit of each requested size: the points of a faithfulness curve."""
    return [select(shape, scores, "top-n", n) for n in sizes]
