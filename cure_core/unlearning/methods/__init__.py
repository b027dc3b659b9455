"""One class per unlearning method (method.md §7), one registry, and the run's settings.

========== ============================================ ==============================================
method     forget objective (g_f)                       combination with retain (g_r)
========== ============================================ ==============================================
ga         −NLL (gradient ascent)                       none
graddiff   −NLL                                         g_f + α·g_r, retain NLL or KL to the original
npo        NPO, β                                       g_f + α·g_r (retain NLL or KL)
e2urec     KL to a "forgetting teacher"                 g_f + α·g_r, retain KL to the original
pcgrad     ``forget_loss`` (NPO, GA or teacher KL)      PCGrad over all parameters
sago       ``forget_loss``                              SAGO over all parameters
cure       ``forget_loss``                              per module group (see ``cure.py``)
========== ============================================ ==============================================

``base.py`` is the interface, ``arguments.py`` each family's arguments model, ``gradient.py``,
``conflict.py`` and ``cure.py`` the families, ``registry.py`` the one list of methods and
``config.py`` the settings.
"""

from cure_core.unlearning.methods.arguments import ForgetKind, MethodArguments
from cure_core.unlearning.methods.base import Batch, GroupMasks, UnlearnMethod
from cure_core.unlearning.methods.config import MethodName, UnlearnConfig
from cure_core.unlearning.methods.registry import METHODS

__all__ = [
    "METHODS",
    "Batch",
    "ForgetKind",
    "GroupMasks",
    "MethodArguments",
    "MethodName",
    "UnlearnConfig",
    "UnlearnMethod",
]
