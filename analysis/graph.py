"""The computational graph of a pre-LayerNorm transformer: node and edge names, dense indices.

Conventions (EAP-IG, Hanna et al. 2024; method.md §3):

- sources (writers to the residual stream), ``n_src = 1 + L·(H+1)``, in this order:
  ``input``, then per layer ``a{l}.h0 … a{l}.h{H-1}``, ``m{l}``;
- destinations (readers), ``n_dst = L·(3H+1) + 1``, in this order: per layer the q, k and v
  inputs of every head (``a{l}.h{h}<q>`` …) then ``m{l}``, and finally ``logits``;
- an edge ``src -> dst`` is real when the source is computed before the destination reads the
  residual stream. Each component sits at a *stage*: input 0, attention of layer l ``2l+1``,
  MLP of layer l ``2l+2``, logits ``2L+1``; a destination reads every source of a lower stage.

All index arithmetic lives here; scores are stored dense as ``[n_src, n_dst]`` with
:meth:`GraphShape.real_edge_mask` marking the real edges.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from analysis.errors import AnalysisInputError

QKV = ("q", "k", "v")
_EDGE = re.compile(r"^(?P<src>[^-<>]+)->(?P<dst>[^<>]+)(?:<(?P<qkv>[qkv])>)?$")


@dataclass(frozen=True)
class GraphShape:
    """Node and edge indexing for a model with ``n_layers`` layers of ``n_heads`` heads."""

    n_layers: int
    n_heads: int

    def __post_init__(self) -> None:
        if self.n_layers < 1 or self.n_heads < 1:
            raise ValueError(f"a graph needs at least one layer and one head, got L={self.n_layers}, H={self.n_heads}")

    @property
    def n_src(self) -> int:
        return 1 + self.n_layers * (self.n_heads + 1)

    @property
    def n_dst(self) -> int:
        return self.n_layers * (3 * self.n_heads + 1) + 1

    @property
    def n_edges(self) -> int:
        """Number of real edges, from the closed formula (the mask must agree with it).

        Every q/k/v input and MLP input of layer l reads ``1 + l·(H+1)`` earlier writers; an MLP
        also reads its own layer's H heads; the logits read all ``n_src`` writers.
        """
        L, H = self.n_layers, self.n_heads
        readers_per_layer = 3 * H + 1
        return readers_per_layer * (L + (H + 1) * L * (L - 1) // 2) + L * H + self.n_src

    # --- indices --------------------------------------------------------------------------

    def head_src(self, layer: int, head: int) -> int:
        return 1 + layer * (self.n_heads + 1) + head

    def mlp_src(self, layer: int) -> int:
        return 1 + layer * (self.n_heads + 1) + self.n_heads

    def head_dst(self, layer: int, head: int, qkv: str) -> int:
        return layer * (3 * self.n_heads + 1) + QKV.index(qkv) * self.n_heads + head

    def mlp_dst(self, layer: int) -> int:
        return layer * (3 * self.n_heads + 1) + 3 * self.n_heads

    @property
    def logits_dst(self) -> int:
        return self.n_dst - 1

    # --- names, stages, mask --------------------------------------------------------------

    @cached_property
    def src_names(self) -> list[str]:
        names = ["input"]
        for layer in range(self.n_layers):
            names += [f"a{layer}.h{h}" for h in range(self.n_heads)] + [f"m{layer}"]
        return names

    @cached_property
    def dst_names(self) -> list[str]:
        names = []
        for layer in range(self.n_layers):
            names += [f"a{layer}.h{h}<{x}>" for x in QKV for h in range(self.n_heads)] + [f"m{layer}"]
        return [*names, "logits"]

    @cached_property
    def src_stage(self) -> np.ndarray:
        stages = [0]
        for layer in range(self.n_layers):
            stages += [2 * layer + 1] * self.n_heads + [2 * layer + 2]
        return np.array(stages)

    @cached_property
    def dst_stage(self) -> np.ndarray:
        stages = []
        for layer in range(self.n_layers):
            stages += [2 * layer + 1] * (3 * self.n_heads) + [2 * layer + 2]
        return np.array([*stages, 2 * self.n_layers + 1])

    @cached_property
    def dst_module(self) -> np.ndarray:
        """``[n_dst]``: the source index of the module each destination belongs to (a head's
        q/k/v inputs → the head, an MLP input → the MLP); ``-1`` for ``logits``."""
        owners = []
        for layer in range(self.n_layers):
            owners += [self.head_src(layer, h) for _ in QKV for h in range(self.n_heads)] + [self.mlp_src(layer)]
        return np.array([*owners, -1])

    @cached_property
    def dst_qkv(self) -> list[str]:
        """``[n_dst]``: ``q``/``k``/``v`` for head inputs, ``""`` for MLPs and logits."""
        tags = []
        for _ in range(self.n_layers):
            tags += [x for x in QKV for _ in range(self.n_heads)] + [""]
        return [*tags, ""]

    def module_layer_head(self, src: int) -> tuple[int | None, int | None]:
        """(layer, head) of a module: head None for MLPs, both None for ``input``."""
        if src == 0:
            return None, None
        layer, offset = divmod(src - 1, self.n_heads + 1)
        return layer, (offset if offset < self.n_heads else None)

    def real_edge_mask(self) -> np.ndarray:
        """``[n_src, n_dst]`` bool: True where the source is written before the destination reads."""
        return self.src_stage[:, None] < self.dst_stage[None, :]

    def edge_name(self, src: int, dst: int) -> str:
        """``a0.h1->a2.h3<q>``, ``m1->m3``, ``a3.h0->logits``."""
        return f"{self.src_names[src]}->{self.dst_names[dst]}"

    def parse_edge(self, name: str) -> tuple[int, int]:
        """Inverse of :meth:`edge_name`; raises ``ValueError`` naming an unknown edge."""
        match = _EDGE.match(name)
        if match is None:
            raise AnalysisInputError(f"{name!r} is not an edge name", "write edges like 'a0.h1->a2.h3<q>' or 'm1->logits'")
        dst_name = match["dst"] + (f"<{match['qkv']}>" if match["qkv"] else "")
        try:
            src, dst = self.src_names.index(match["src"]), self.dst_names.index(dst_name)
        except ValueError:
            raise AnalysisInputError(f"{name!r} names a node this {self.n_layers}-layer, {self.n_heads}-head graph does not have", "name nodes of this model") from None
        if not self.real_edge_mask()[src, dst]:
            raise AnalysisInputError(f"{name!r} is not a real edge: its source is computed after its destination reads", "name an edge from an earlier to a later component")
        return src, dst
