"""The typed result of comparing a model with Retrain on a forget request (method.md §8).

:class:`Comparison` holds what was measured (each model's utility per split and membership-
inference AUC per attack, the distances to Retrain, the set sizes); the headline numbers
(``test_auc``, ``privleak`` ...) are computed fields, so ``model_dump()`` gives the flat keys
that saved reports and ``--json`` outputs have always had. The rows every table needs come from
its methods: :meth:`Comparison.versus` (model against Retrain, per metric),
:meth:`Comparison.reference_rows` (Original and Retrain as table rows) and :meth:`Comparison.row`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, Field, computed_field

from cure_core.metrics import privleak

PRIMARY_MIA = "loss"

METRIC_ROWS: dict[str, tuple[str, str]] = {
    "test AUC": ("test", "auc"),
    "test ACC": ("test", "acc"),
    "test LogLoss": ("test", "logloss"),
    "forget AUC": ("forget", "auc"),
    "forget ACC": ("forget", "acc"),
    "forget LogLoss": ("forget", "logloss"),
    "retain AUC": ("retain", "auc"),
}
"""Row label → (split, metric) of the model-against-Retrain tables."""


class Utility(BaseModel):
    """AUC (``None`` with one class only), accuracy and log loss of the Yes/No answer on a split."""

    auc: float | None
    acc: float
    logloss: float
    n: int


class ModelScores(BaseModel):
    """One model on a request: utility per split (absent when the split is empty) and MIA AUC
    per attack (forget = members, holdout = non-members; empty without holdout users)."""

    test: Utility | None = None
    forget: Utility | None = None
    retain: Utility | None = None
    mia: dict[str, float | None] = Field(default_factory=dict)

    def value(self, split: str, metric: str) -> float | None:
        """One number: ``value("test", "auc")``, or ``value("mia", "loss")``."""
        if split == "mia":
            return self.mia.get(metric)
        scores = getattr(self, split)
        return None if scores is None else getattr(scores, metric)


def _score(scores: str, split: str, metric: str) -> Any:
    """A computed field of :class:`Comparison`: ``value(split, metric)`` of its ``scores``
    (``"model"``, or ``"reference"`` for Retrain's)."""

    def value(self: Comparison) -> float | None:
        return getattr(self, scores).value(split, metric)

    return computed_field(property(value), return_type=float | None)


class Comparison(BaseModel):
    """A model next to Retrain on one request. A user's checkpoint given without a Retrain has
    ``retrain`` and the distances ``None``, and ``retrain_unavailable`` says why."""

    name: str
    request: str
    request_description: str
    sizes: dict[str, int]
    evaluated: dict[str, int] = Field(
        default_factory=dict, description="rows scored per set (a text model's are seeded draws: evaluate.py)"
    )
    model: ModelScores
    retrain: ModelScores | None
    jsd_to_retrain: float | None
    l2_to_retrain: float | None
    retrain_unavailable: str | None = None
    retrain_model: dict[str, str] | None = Field(
        None, description="the Retrain measured against: its path and weights fingerprint (None without one)"
    )

    @property
    def reference(self) -> ModelScores:
        """Retrain's scores, empty when there is no Retrain (every value is then ``None``)."""
        return self.retrain if self.retrain is not None else ModelScores()

    test_auc = _score("model", "test", "auc")
    test_acc = _score("model", "test", "acc")
    test_logloss = _score("model", "test", "logloss")
    forget_auc = _score("model", "forget", "auc")
    forget_acc = _score("model", "forget", "acc")
    forget_logloss = _score("model", "forget", "logloss")
    retrain_test_auc = _score("reference", "test", "auc")
    retrain_forget_auc = _score("reference", "forget", "auc")
    retrain_forget_logloss = _score("reference", "forget", "logloss")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def forget_auc_gap(self) -> float | None:
        """Forget AUC minus Retrain's (``None`` where either is undefined)."""
        ours, ref = self.forget_auc, self.retrain_forget_auc
        return None if ours is None or ref is None else ours - ref

    mia_auc = _score("model", "mia", PRIMARY_MIA)
    retrain_mia_auc = _score("reference", "mia", PRIMARY_MIA)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def privleak(self) -> dict[str, float]:
        """MUSE PrivLeak (%) per attack where both AUCs are defined."""
        ref = self.reference.mia
        return {
            a: privleak(auc, ref[a]) for a, auc in self.model.mia.items() if auc is not None and ref.get(a) is not None
        }  # type: ignore[arg-type]

    def versus(self, labels: Iterable[str], mia: bool = True) -> list[tuple[str, float | None, float | None]]:
        """(label, this model, Retrain) for each label of :data:`METRIC_ROWS`, then, with
        ``mia``, one ``MIA AUC (<attack>)`` row per attack."""
        rows = [
            (label, self.model.value(*METRIC_ROWS[label]), self.reference.value(*METRIC_ROWS[label]))
            for label in labels
        ]
        if mia:
            rows += [
                (f"MIA AUC ({attack})", auc, self.reference.mia.get(attack)) for attack, auc in self.model.mia.items()
            ]
        return rows

    def row(self) -> dict[str, Any]:
        """This model as a row of the comparison tables (keys of ``unlearning.compare.COLUMNS``)."""
        return {
            "method": self.name,
            "test_auc": self.test_auc,
            "test_logloss": self.test_logloss,
            "forget_auc": self.forget_auc,
            "forget_acc": self.forget_acc,
            "jsd_to_retrain": self.jsd_to_retrain,
            "l2_to_retrain": self.l2_to_retrain,
            "forget_auc_gap": self.forget_auc_gap,
            "mia_auc": self.mia_auc,
            "privleak_loss": self.privleak.get(PRIMARY_MIA),
        }

    def reference_rows(self, original_seconds: float | None, retrain_seconds: float | None) -> list[dict[str, Any]]:
        """For Original compared with Retrain: the ``Original`` and ``Retrain`` table rows (Retrain
        at distance 0 from itself), with each model's training time as ``seconds``. Without a
        Retrain (a user's checkpoint given without one) the ``Original`` row alone."""
        original = {**self.row(), "method": "Original", "seconds": original_seconds}
        if self.retrain is None:
            return [original]
        retrain = {
            "method": "Retrain",
            "test_auc": self.retrain_test_auc,
            "test_logloss": self.reference.value("test", "logloss"),
            "forget_auc": self.retrain_forget_auc,
            "forget_acc": self.reference.value("forget", "acc"),
            "jsd_to_retrain": 0.0,
            "l2_to_retrain": 0.0,
            "forget_auc_gap": 0.0,
            "mia_auc": self.retrain_mia_auc,
            "privleak_loss": 0.0 if self.retrain_mia_auc is not None else None,
        }
        return [original, {**retrain, "seconds": retrain_seconds}]
