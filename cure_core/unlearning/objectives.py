"""Losses on the answer token (method.md §7), each a scalar to *minimise*.

``logits`` are full-vocabulary logits at the answer position ``[n, vocab]``; ``answers`` the
token ids of the true answers ``[n]``; ``ref_logits`` the frozen original model's logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nll(logits: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of the true answer (the training loss)."""
    return F.cross_entropy(logits, answers)


def gradient_ascent(logits: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
    """GA / NegGrad: minimising −NLL ascends the forget set's NLL."""
    return -nll(logits, answers)


def npo(logits: torch.Tensor, ref_logits: torch.Tensor, answers: torch.Tensor, beta: float) -> torch.Tensor:
    """NPO (Zhang et al. 2024): (2/β)·E[log(1 + (π_θ/π_ref)^β)] on the true answer; bounded
    below by 0 as π_θ → 0, so it slows down instead of running away like GA."""
    logp = torch.log_softmax(logits, -1).gather(1, answers[:, None])[:, 0]
    ref = torch.log_softmax(ref_logits, -1).gather(1, answers[:, None])[:, 0]
    return -(2.0 / beta) * F.logsigmoid(-beta * (logp - ref)).mean()


def kl_to(logits: torch.Tensor, target_logits: torch.Tensor, answer_ids: tuple[int, int]) -> torch.Tensor:
    """KL(target ‖ model) between the two-way (Yes, No) answer distributions."""
    model_logp = torch.log_softmax(logits[:, list(answer_ids)], -1)
    target_logp = torch.log_softmax(target_logits[:, list(answer_ids)], -1)
    return F.kl_div(model_logp, target_logp, log_target=True, reduction="batchmean")
