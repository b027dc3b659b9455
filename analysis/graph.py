"""The computational graph of a pre-LayerNorm transformer: node and edge names, dense indices.

Conventions (EAP-IG, Hanna et al. 2024; method.md §3), for L layers of H query heads and G
key/value heads (G = H for plain multi-head attention, G < H with H % G = 0 for grouped-query
attention, as in Llama-3, Qwen2 or Mistral):

- sources (writers to the residual stream), ``n_src = 1 + L·(H+1)``, in this order:
  ``input``, then per layer ``a{l}.h0 … a{l}.h{H-1}``, ``m{l}``;
- destinations (readers), ``n_dst = L·(H + 2G + 1) + 1``, in this order: per layer the q input
  of every query head, the k inputs of every key/value head, their v inputs, then ``m{l}``; and
  finally ``logits``. With G = H this is ``L·(3H+1) + 1`` and the names are ``a{l}.h{h}<q|k|v>``.
  With G < H the K and V inputs belong to key/value heads and are named ``a{l}.kv{g}<k>`` /
  ``a{l}.kv{g}<v>``: a K/V edge goes to the key/value head that a query head reads, and query
  head h reads key/value head ``h // (H/G)`` (Hugging Face's ``repeat_kv`` order). Edge names
  may also address a K/V input through a query head, ``a{l}.h{h}<k>``, which parses to the
  key/value head that head reads;
- an edge ``src -> dst`` is real when the source is computed before the destination reads the
  residual stream. Each component sits at a *stage*: input 0, attention of layer l ``2l+1``,
  MLP of layer l ``2l+2``, logits ``2L+1``; a destination reads every source of a lower stage.

A destination's *module* (:attr:`GraphShape.dst_module`) is the head or MLP that reads it; a
shared K/V input is read by all H/G query heads of its group and is listed under the first of
them (:attr:`GraphShape.dst_readers` has every reader).

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
_HEAD_INPUT = re.compile(r"^a(?P<layer>\d+)\.h(?P<head>\d+)$")


@dataclass(frozen=True)
class GraphShape:
    """Node and edge indexing for a model with ``n_layers`` layers of ``n_heads`` query heads
    and ``n_kv_heads`` key/value heads (``None``: as many as query heads)."""

    n_layers: int
    n_heads: int
    n_kv_heads: int | None = None

    def __post_init__(self) -> None:
        if self.n_layers < 1 or self.n_heads < 1:
            raise ValueError(f"a graph needs at least one layer and one head, got L={self.n_layers}, H={self.n_heads}")
        if self.n_kv_heads is None:
            object.__setattr__(self, "n_kv_heads", self.n_heads)
        if self.kv_heads < 1 or self.n_heads % self.kv_heads:
            raise ValueError(f"{self.n_heads} query heads cannot share {self.n_kv_heads} key/value heads evenly")

    @property
    def kv_heads(self) -> int:
        """G, the number of key/value heads (an ``int``, unlike the optional field)."""
        return int(self.n_kv_heads if self.n_kv_heads is not None else self.n_heads)

    @property
    def group_size(self) -> int:
        """Query heads per key/value head (1 without GQA)."""
        return self.n_heads // self.kv_heads

    @property
    def grouped(self) -> bool:
        return self.kv_heads != self.n_heads

    @property
    def readers_per_layer(self) -> int:
        """Destinations of one layer: H q inputs, G k and G v inputs, one MLP input."""
        return self.n_heads + 2 * self.kv_heads + 1

    @property
    def n_src(self) -> int:
        return 1 + self.n_layers * (self.n_heads + 1)

    @property
    def n_dst(self) -> int:
        return self.n_layers * self.readers_per_layer + 1

    @property
    def n_edges(self) -> int:
        """Number of real edges, from the closed formula (the mask must agree with it).

        Every q/k/v input and MLP input of layer l reads ``1 + l·(H+1)`` earlier writers; an MLP
        also reads its own layer's H heads; the logits read all ``n_src`` writers.
        """
        L, H = self.n_layers, self.n_heads
        return self.readers_per_layer * (L + (H + 1) * L * (L - 1) // 2) + L * H + self.n_src

    # --- indices --------------------------------------------------------------------------

    def head_src(self, layer: int, head: int) -> int:
        return 1 + layer * (self.n_heads + 1) + head

    def mlp_src(self, layer: int) -> int:
        return 1 + layer * (self.n_heads + 1) + self.n_heads

    def kv_head_of(self, head: int) -> int:
        """The key/value head query head ``head`` reads."""
        return head // self.group_size

    def qkv_dst(self, layer: int, qkv: str) -> int:
        """Index of the first ``qkv`` input of ``layer`` (they are consecutive)."""
        offset = {"q": 0, "k": self.n_heads, "v": self.n_heads + self.kv_heads}[qkv]
        return layer * self.readers_per_layer + offset

    def n_inputs(self, qkv: str) -> int:
        """How many ``qkv`` inputs one layer has: H for q, G for k and v."""
        return self.n_heads if qkv == "q" else self.kv_heads

    def head_dst(self, layer: int, head: int, qkv: str) -> int:
        """The ``qkv`` input of head ``head``: a query head for q, a key/value head for k and v."""
        return self.qkv_dst(layer, qkv) + head

    def mlp_dst(self, layer: int) -> int:
        return layer * self.readers_per_layer + self.n_heads + 2 * self.kv_heads

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

    def _input_name(self, layer: int, head: int, qkv: str) -> str:
        kind = "kv" if qkv != "q" and self.grouped else "h"
        return f"a{layer}.{kind}{head}<{qkv}>"

    @cached_property
    def dst_names(self) -> list[str]:
        names = []
        for layer in range(self.n_layers):
            names += [self._input_name(layer, h, x) for x in QKV for h in range(self.n_inputs(x))] + [f"m{layer}"]
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
            stages += [2 * layer + 1] * (self.readers_per_layer - 1) + [2 * layer + 2]
        return np.array([*stages, 2 * self.n_layers + 1])

    @cached_property
    def dst_readers(self) -> np.ndarray:
        """``[n_dst, n_src]`` bool: which modules read each destination (a K/V input of a
        grouped model is read by every query head of its group; ``logits`` by none)."""
        readers = np.zeros((self.n_dst, self.n_src), dtype=bool)
        for layer in range(self.n_layers):
            for h in range(self.n_heads):
                readers[self.head_dst(layer, h, "q"), self.head_src(layer, h)] = True
                for x in "kv":
                    readers[self.head_dst(layer, self.kv_head_of(h), x), self.head_src(layer, h)] = True
            readers[self.mlp_dst(layer), self.mlp_src(layer)] = True
        return readers

    @cached_property
    def dst_module(self) -> np.ndarray:
        """``[n_dst]``: the source index of the module each destination belongs to (a head's
        q/k/v inputs → the head, a shared K/V input → the first query head of its group, an MLP
        input → the MLP); ``-1`` for ``logits``."""
        return np.where(self.dst_readers.any(axis=1), self.dst_readers.argmax(axis=1), -1)

    @cached_property
    def dst_qkv(self) -> list[str]:
        """``[n_dst]``: ``q``/``k``/``v`` for head inputs, ``""`` for MLPs and logits."""
        tags = []
        for _ in range(self.n_layers):
            tags += [x for x in QKV for _ in range(self.n_inputs(x))] + [""]
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
        """``a0.h1->a2.h3<q>``, ``m1->m3``, ``a3.h0->logits``; ``a0.h1->a2.kv1<k>`` with GQA."""
        return f"{self.src_names[src]}->{self.dst_names[dst]}"

    def _dst_index(self, name: str, qkv: str | None) -> int:
        if qkv is None:
            return self.dst_names.index(name)
        head_input = _HEAD_INPUT.match(name)
        if qkv != "q" and self.grouped and head_input is not None:  # a K/V input named by a query head
            layer, head = int(head_input["layer"]), int(head_input["head"])
            if layer >= self.n_layers or head >= self.n_heads:
                raise ValueError(name)
            return self.head_dst(layer, self.kv_head_of(head), qkv)
        return self.dst_names.index(f"{name}<{qkv}>")

    def parse_edge(self, name: str) -> tuple[int, int]:
        """Inverse of :meth:`edge_name`; raises ``ValueError`` naming an unknown edge."""
        match = _EDGE.match(name)
        if match is None:
            raise AnalysisInputError(
                f"{name!r} is not an edge name", "write edges like 'a0.h1->a2.h3<q>' or 'm1->logits'"
            )
        try:
            src, dst = self.src_names.index(match["src"]), self._dst_index(match["dst"], match["qkv"])
        except ValueError:
            raise AnalysisInputError(
                f"{name!r} names a node this {self.n_layers}-layer, {self.n_heads}-head graph does not have",
                "name nodes of this model",
            ) from None
        if not self.real_edge_mask()[src, dst]:
            raise AnalysisInputError(
                f"{name!r} is not a real edge: its source is computed after its destination reads",
                "name an edge from an earlier to a later component",
            )
        return src, dst
