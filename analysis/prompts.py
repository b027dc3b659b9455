"""What attribution runs on: batches of clean/corrupted prompt pairs and a scalar metric."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

Metric = Callable[[torch.Tensor], torch.Tensor]
"""Maps logits ``[batch, pos, vocab]`` to one value per prompt, ``[batch]``."""


@dataclass
class PromptBatch:
    """Clean and corrupted token ids ``[batch, pos]`` of the same shape, paired row by row.

    ``weight`` ``[batch]`` multiplies the metric per prompt: all ones for the plain metric,
    +1/−1 by label for the label-signed variant (so "more correct" is always positive).
    """

    clean: torch.Tensor
    corrupt: torch.Tensor
    weight: torch.Tensor

    def __post_init__(self) -> None:
        if self.clean.ndim != 2 or self.clean.shape != self.corrupt.shape:
            raise ValueError(
                f"clean and corrupted prompts must be [batch, pos] token ids of the same shape, got {tuple(self.clean.shape)} and {tuple(self.corrupt.shape)} "
                "— corruptions must keep the prompt length (swap tokens, do not insert or delete)"
            )
        if self.weight.shape != (self.clean.shape[0],):
            raise ValueError(f"weight must have one entry per prompt ({self.clean.shape[0]}), got shape {tuple(self.weight.shape)}")

    def __len__(self) -> int:
        return int(self.clean.shape[0])

    def to(self, device: torch.device | str) -> PromptBatch:
        return PromptBatch(self.clean.to(device), self.corrupt.to(device), self.weight.to(device))


@dataclass(frozen=True)
class LogitDiff:
    """logit(positive) − logit(negative) at the last position: for the recommender,
    logit(Yes) − logit(No) at the answer position.

    ``last_position_only`` tells the attribution engine it may unembed the last position
    alone (a third of a forward pass saved on a small model with a large vocabulary).
    """

    positive_id: int
    negative_id: int
    last_position_only: bool = True

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        last = logits[:, -1]
        return last[:, self.positive_id] - last[:, self.negative_id]
