"""User-facing errors: one line that names the problem and the fix."""

from __future__ import annotations


class CureError(Exception):
    """An error caused by input the user can change.

    The CLI and the app print ``str(error)`` as it is — never a traceback — so the message must
    say what is wrong *and* what to do about it.
    """

    def __init__(self, problem: str, fix: str) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} — fix: {fix}")
