"""One progress interface for slow work: a tqdm bar in the terminal, a callback for the app."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tqdm.auto import tqdm

ProgressFn = Callable[[int, int, dict[str, Any]], None]
"""``progress(done, total, info)``: called as work advances; ``info`` holds live figures."""


class Progress:
    """Drives a tqdm bar (unless ``quiet``) and forwards every update to ``callback``."""

    def __init__(
        self,
        total: int,
        desc: str,
        callback: ProgressFn | None = None,
        quiet: bool = False,
        position: int | None = None,
    ) -> None:
        self.total, self.done, self.callback = total, 0, callback
        self.bar = None if quiet else tqdm(total=total, desc=desc, position=position, leave=True, dynamic_ncols=True)

    def update(self, n: int = 1, **info: Any) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            if info:
                self.bar.set_postfix(
                    {k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in info.items()}, refresh=False
                )
        if self.callback is not None:
            self.callback(self.done, self.total, info)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
