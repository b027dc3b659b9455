"""The one exception ``analysis`` raises for input a user can change (an unknown method, a share
outside [0, 1], an edge name the graph does not have, ...). It is a ``ValueError`` that carries
the problem and the fix apart, so an application can show it as one line without depending on
this package's wording; programming errors stay plain ``ValueError``/``TypeError``.
"""

from __future__ import annotations


class AnalysisInputError(ValueError):
    """Bad input to an ``analysis`` function: ``problem`` and how to ``fix`` it."""

    def __init__(self, problem: str, fix: str) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} — {fix}")
