"""The registry of studies: each one's name, settings model, run and one-line description."""

from __future__ import annotations

from cure_core.studies.base import Study
from cure_core.studies.deletion_rate import DeletionRate
from cure_core.studies.difficulty import Difficulty
from cure_core.studies.pareto import Pareto
from cure_core.studies.stability import Stability

STUDIES: dict[str, Study] = {study.name: study for study in (Pareto(), DeletionRate(), Stability(), Difficulty())}
