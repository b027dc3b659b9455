"""The registry of studies: settings model, run function and a one-line description."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cure_core.studies import ABOUT, deletion_rate, difficulty, pareto, stability
from cure_core.studies.common import StudySettings


@dataclass(frozen=True)
class Study:
    settings: type[StudySettings]
    run: Callable[..., dict[str, Any]]
    about: str


STUDIES: dict[str, Study] = {
    "pareto": Study(pareto.ParetoSettings, pareto.run, ABOUT["pareto"]),
    "deletion-rate": Study(deletion_rate.DeletionRateSettings, deletion_rate.run, ABOUT["deletion-rate"]),
    "stability": Study(stability.StabilitySettings, stability.run, ABOUT["stability"]),
    "difficulty": Study(difficulty.DifficultySettings, difficulty.run, ABOUT["difficulty"]),
}
