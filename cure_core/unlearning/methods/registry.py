"""Every unlearning method by name. Adding a method: one class (a new module or an existing
family's) and one line here; the CLI, the app, the strength grids and the config follow. A
method with new arguments declares their model (:mod:`~cure_core.unlearning.methods.arguments`),
and the run's settings (:class:`~cure_core.unlearning.methods.config.UnlearnConfig`) extend it."""

from __future__ import annotations

from cure_core.unlearning.methods.base import UnlearnMethod
from cure_core.unlearning.methods.conflict import SAGO, PCGrad
from cure_core.unlearning.methods.cure import Cure, CureNoCircuit, CureRandomGroups
from cure_core.unlearning.methods.gradient import NPO, E2URec, GradDiff, GradientAscent

METHODS: dict[str, type[UnlearnMethod]] = {
    method.name: method
    for method in (GradientAscent, GradDiff, NPO, E2URec, PCGrad, SAGO, Cure, CureNoCircuit, CureRandomGroups)
}
