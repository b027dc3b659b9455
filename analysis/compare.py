"""Forget vs retain: differential scores and circuit overlap (method.md §4–§5).

Two attributions on different prompt sets can differ in overall size (a set whose corruption
moves the metric more gets larger scores everywhere), so differences are taken between scores
normalised by each set's total |score|: a module that carries a larger *share* of one set's
behaviour than of the other's stands out, a uniformly louder set does not.
"""

from __future__ import annotations

from collections.abc import Hashable
from collections.abc import Set as AbstractSet
from typing import overload

import numpy as np

from analysis.attribution import Attribution
from analysis.circuit import Circuit
from analysis.errors import AnalysisInputError


def normalised(scores: np.ndarray) -> np.ndarray:
    """Scores divided by their total magnitude (all zeros stay zeros)."""
    total = np.abs(scores).sum()
    return scores / total if total > 0 else scores


def differential_edges(forget: Attribution, retain: Attribution) -> np.ndarray:
    """``[n_src, n_dst]`` normalised forget score minus normalised retain score."""
    _check_same_graph(forget, retain)
    return normalised(forget.scores) - normalised(retain.scores)


def differential_nodes(forget: Attribution, retain: Attribution) -> np.ndarray:
    """``[n_src]`` normalised forget node score minus normalised retain node score."""
    _check_same_graph(forget, retain)
    return normalised(forget.node_scores) - normalised(retain.node_scores)


VIEWS: tuple[str, ...] = ("forget", "retain", "difference")


def view_scores(forget: Attribution, retain: Attribution) -> dict[str, np.ndarray]:
    """The edge scores of each view (:data:`VIEWS`): each set's own, and their difference."""
    return {"forget": forget.scores, "retain": retain.scores, "difference": differential_edges(forget, retain)}


@overload
def jaccard(a: AbstractSet[Hashable], b: AbstractSet[Hashable], empty: float = 1.0) -> float: ...
@overload
def jaccard(a: AbstractSet[Hashable], b: AbstractSet[Hashable], empty: None) -> float | None: ...
def jaccard(a: AbstractSet[Hashable], b: AbstractSet[Hashable], empty: float | None = 1.0) -> float | None:
    """|a ∩ b| / |a ∪ b|, in [0, 1]; 1 for a set and itself.

    Two empty sets are identical, so by the usual convention their Jaccard is ``empty`` = 1.0.
    A summary that averages over many pairs and must not count "nothing in either" as agreement
    passes ``empty=None`` and drops the pair (the stability study does, for groups).
    """
    union = a | b
    return len(a & b) / len(union) if union else empty


def overlap(first: Circuit, second: Circuit) -> dict[str, float]:
    """Jaccard similarity of the two circuits' edges and of their nodes."""
    return {
        "edges_jaccard": jaccard(set(first.edge_names()), set(second.edge_names())),
        "nodes_jaccard": jaccard(first.nodes(), second.nodes()),
    }


def _check_same_graph(first: Attribution, second: Attribution) -> None:
    if first.shape != second.shape:
        raise AnalysisInputError(
            f"cannot compare attributions of different models ({first.shape} vs {second.shape})",
            "compare attributions of one model",
        )
