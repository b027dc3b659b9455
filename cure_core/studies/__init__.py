"""The evidence studies (method.md §8): one module per study, one registry.

Each study has a settings model (``quick()`` for tests) and ``run(ws, settings, progress,
quiet)``, which resumes from its cells in ``cache/studies`` and saves a result with tables,
Plotly figures, plain-language summary lines, settings, time and versions.
"""

from __future__ import annotations

ABOUT: dict[str, str] = {
    "pareto": "every method over its strength grid and 3 seeds: JSD / forget-AUC gap against test AUC, Pareto front",
    "deletion-rate": "1%, 5%, 10%, 20% of users: Retrain and every method at its chosen strength",
    "stability": "circuits and module groups across 3 model seeds and 3 prompt resamples (Jaccard per pair)",
    "difficulty": "per-user circuit difficulty against easy/hard anchors, checked against forgetting after CURE-style",
}
"""What each study does, importable without torch (for the CLI's help)."""
