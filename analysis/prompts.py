"""What attribution runs on: batches of clean/corrupted prompt pairs and a scalar metric."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

Metric = Callable[[torch.Tensor], torch.Tensor]
"""Maps logits ``[batch, pos, vocab]`` to one value per prompt, ``[batch]``."""


class PromptLengthError(ValueError):
    """A clean prompt and its corrupted partner differ in length (or the batch is not left-padded)."""


@dataclass
class PromptBatch:
    """Clean and corrupted token ids ``[batch, pos]`` of the same shape, paired row by row.

    ``weight`` ``[batch]`` multiplies the metric per prompt: all ones for the plain metric,
    +1/−1 by label for the label-signed variant (so "more correct" is always positive).

    ``attention_mask`` ``[batch, pos]`` (1 = real token, 0 = padding), shared by both prompts
    of a pair, marks a *left*-padded batch of prompts of different lengths: each prompt's last
    real token is then the last position, where the metric reads. ``None``: no padding.
    """

    clean: torch.Tensor
    corrupt: torch.Tensor
    weight: torch.Tensor
    attention_mask: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.clean.ndim != 2 or self.clean.shape != self.corrupt.shape:
            raise PromptLengthError(
                "clean and corrupted prompts must be [batch, pos] token ids of the same shape, got "
                f"{tuple(self.clean.shape)} and {tuple(self.corrupt.shape)} "
                "— corruptions must keep the prompt length (swap tokens, do not insert or delete)"
            )
        if self.weight.shape != (self.clean.shape[0],):
            raise ValueError(
                f"weight must have one entry per prompt ({self.clean.shape[0]}), got shape {tuple(self.weight.shape)}"
            )
        if self.attention_mask is not None:
            mask = self.attention_mask
            if mask.shape != self.clean.shape:
                raise PromptLengthError(
                    f"the attention mask has shape {tuple(mask.shape)}, the prompts {tuple(self.clean.shape)}"
                )
            if not bool(mask[:, -1].all()) or bool((mask[:, 1:] < mask[:, :-1]).any()):
                raise PromptLengthError(
                    "the batch must be left-padded: every prompt's mask is 0s then 1s, ending on a real token"
                )

    @classmethod
    def from_pairs(
        cls, clean: Sequence[Sequence[int]], corrupt: Sequence[Sequence[int]], weight: torch.Tensor, pad_id: int
    ) -> PromptBatch:
        """Left-pad prompts of different lengths into one batch; each pair must have equal length."""
        if len(clean) != len(corrupt) or not clean:
            raise ValueError(
                f"need as many corrupted prompts as clean ones (at least one), got {len(clean)} and {len(corrupt)}"
            )
        unequal = [i for i, (a, b) in enumerate(zip(clean, corrupt, strict=True)) if len(a) != len(b)]
        if unequal:
            i = unequal[0]
            raise PromptLengthError(
                f"{len(unequal)} clean/corrupted pair(s) differ in length (first: pair {i}, {len(clean[i])} "
                f"vs {len(corrupt[i])} tokens) "
                "— corrupt by same-length token replacement, or drop those pairs"
            )
        width = max(len(a) for a in clean)

        def padded(rows: Sequence[Sequence[int]]) -> torch.Tensor:
            return torch.tensor([[pad_id] * (width - len(r)) + list(r) for r in rows], dtype=torch.long)

        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in clean], dtype=torch.long)
        return cls(padded(clean), padded(corrupt), weight, mask if bool((mask == 0).any()) else None)

    def __len__(self) -> int:
        return int(self.clean.shape[0])

    def __getitem__(self, rows: slice) -> PromptBatch:
        """The prompts ``rows`` (a micro-batch), their padding columns trimmed."""
        mask = None if self.attention_mask is None else self.attention_mask[rows]
        first = 0 if mask is None else int((mask.sum(0) > 0).nonzero()[0])
        mask = None if mask is None or bool(mask[:, first:].all()) else mask[:, first:]
        return PromptBatch(self.clean[rows, first:], self.corrupt[rows, first:], self.weight[rows], mask)

    def to(self, device: torch.device | str) -> PromptBatch:
        mask = None if self.attention_mask is None else self.attention_mask.to(device)
        return PromptBatch(self.clean.to(device), self.corrupt.to(device), self.weight.to(device), mask)


@dataclass(frozen=True)
class LogitDiff:
    """logit(positive) − logit(negative) at the last position: for the recommender,
    logit(Yes) − logit(No) at the answer position (each prompt's last real token, batches being
    left-padded).

    ``last_position_only`` tells the attribution engine it may unembed the last position
    alone (a third of a forward pass saved on a small model with a large vocabulary).
    """

    positive_id: int
    negative_id: int
    last_position_only: bool = True

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        last = logits[:, -1]
        return last[:, self.positive_id] - last[:, self.negative_id]
