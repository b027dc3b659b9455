"""Floating-point comparisons whose tolerance scales with the values compared.

Another CPU's kernels (AVX-512 vs AVX2 vs the portable ones, see ``ATEN_CPU_CAPABILITY``) sum
in another order, so float32 results agree to a few ulps *of their magnitude*, not to a fixed
absolute number: 1e-6 is 3 ulps at 5.0 but a million at 1e-7. ``assert_close`` therefore allows
``rel × the larger magnitude of the two arrays`` per element.
"""

from __future__ import annotations

import numpy as np
import torch

FLOAT32_EPS = float(np.finfo(np.float32).eps)


def _numpy(values: object) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=np.float64)


def assert_close(actual: object, expected: object, rel: float = 1e-5, err_msg: str = "") -> None:
    """``actual`` equals ``expected`` within ``rel`` of the largest magnitude among both."""
    a, b = _numpy(actual), _numpy(expected)
    assert a.shape == b.shape, f"shapes differ: {a.shape} vs {b.shape} {err_msg}"
    scale = max(float(np.abs(a).max(initial=0.0)), float(np.abs(b).max(initial=0.0)), np.finfo(np.float32).tiny)
    np.testing.assert_allclose(a, b, rtol=0, atol=rel * scale, err_msg=err_msg)
