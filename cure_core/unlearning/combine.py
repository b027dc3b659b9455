"""Combining the forget gradient g_f and the retain gradient g_r (method.md §7).

Both are flat vectors of *descent* directions' gradients (the gradient of a loss to minimise);
the update direction returned is again a gradient to descend.
"""

from __future__ import annotations

import torch


def pcgrad(
    g_f: torch.Tensor, g_r: torch.Tensor, forget_weight: float = 1.0, retain_weight: float = 1.0
) -> torch.Tensor:
    """PCGrad: when g_f·g_r < 0, drop g_f's component along g_r, then γ·g_f + α·g_r.
    The result never opposes g_r (its dot product with g_r is ≥ 0)."""
    dot = torch.dot(g_f, g_r)
    norm = torch.dot(g_r, g_r)
    if dot < 0 and norm > 0:
        g_f = g_f - (dot / norm) * g_r
    return forget_weight * g_f + retain_weight * g_r


def sago(g_f: torch.Tensor, g_r: torch.Tensor, forget_weight: float = 1.0, retain_weight: float = 1.0) -> torch.Tensor:
    """SAGO (arXiv 2604.14808), per element: α·g_r where g_f and g_r have opposite signs,
    γ·g_f elsewhere (an element where either is zero is no conflict)."""
    conflict = torch.sign(g_f) * torch.sign(g_r) < 0
    return torch.where(conflict, retain_weight * g_r, forget_weight * g_f)


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine similarity; NaN when either vector is zero (no gradient in that group)."""
    denom = a.norm() * b.norm()
    return float(torch.dot(a, b) / denom) if denom > 0 else float("nan")


COMBINERS = {"pcgrad": pcgrad, "sago": sago}
