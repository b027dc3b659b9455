"""The one training loop of the models trained here (item and text), and its stopping rule.

A backend (:mod:`cure_core.model.backends`) builds a fresh model and a :class:`TrainingPlan` —
its batches, its loss, its learning-rate schedule and what it is checked on — and
:func:`train` runs it: AdamW, gradients clipped at norm 1, a validation check every
``check_every`` steps (and at the last one), the weights of the best *validation* AUC kept, and
a stop by :func:`stop_reason` (patience or the most checks), never by wall time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from cure_core.data.samples import Samples
from cure_core.metrics import utility
from cure_core.model.recommender import Recommender
from cure_core.progress import Progress, ProgressFn

if TYPE_CHECKING:
    from cure_core.model.recipe import Recipe, TextRecipe

StopReason = Literal["patience", "max_epochs"]
Curve = list[dict[str, float]]


@dataclass
class TrainSets:
    """Which samples a model trains, validates and is tested on, and whose user tokens it learns."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    known_users: np.ndarray


def seed_everything(seed: int) -> None:
    np.random.seed(seed)
    torch.manual_seed(seed)


def stop_reason(valid_aucs: Sequence[float], max_checks: int, patience: int) -> StopReason | None:
    """Why training stops after checks with these validation AUCs, or ``None`` to go on.

    The only stopping rule: ``patience`` checks in a row without a better validation AUC, or
    ``max_checks`` reached — never wall-clock time, so a model does not depend on the machine's
    load. A saved curve that ends where this says ``None`` was cut short by something else.
    """
    best, stale = -1.0, 0
    for auc in valid_aucs:
        best, stale = (auc, 0) if auc > best else (best, stale + 1)
    if valid_aucs and stale >= patience:
        return "patience"
    return "max_epochs" if len(valid_aucs) >= max_checks else None


StepLoss = Callable[[Recommender, np.ndarray, np.ndarray], torch.Tensor]
"""The loss of one batch: the model, the samples' indices and which of them keep their user."""


@dataclass
class TrainingPlan:
    """What a backend decides of one training; :func:`train` runs it.

    ``batches`` yields each step's sample indices, drawing from ``rng``, which the loop also
    draws each prompt's user dropout from (one generator: its draws interleave as in the
    backends' own order). ``checked`` names the validation and test samples each check scores
    (``valid`` decides; ``test`` is recorded for the curve only). ``position`` gives a check's
    place on the curve (``{"epoch": ...}``, or a step and the epochs it amounts to).
    """

    rec: Recommender
    samples: Samples
    rng: np.random.Generator
    batches: Iterator[np.ndarray]
    loss: StepLoss
    lr: float
    weight_decay: float
    lr_factor: Callable[[int], float]
    total_steps: int
    check_every: int
    patience: int
    user_dropout: float
    checked: dict[str, np.ndarray]
    position: Callable[[int], dict[str, float]]
    ema_decay: float = 0.0
    check_batch: int | None = None
    """Prompts per scoring batch of a check (``None``: the backend's)."""

    @classmethod
    def of_recipe(
        cls,
        recipe: Recipe | TextRecipe,
        steps: tuple[Recommender, Samples, np.random.Generator, Iterator[np.ndarray], StepLoss],
        **plan: Any,
    ) -> TrainingPlan:
        """A plan of ``steps`` (the model, its samples, the generator, the batches and the loss)
        with the optimizer settings, patience and user dropout of ``recipe``."""
        rec, samples, rng, batches, loss = steps
        fields = ("lr", "weight_decay", "patience", "user_dropout")
        return cls(rec, samples, rng, batches, loss, **{name: getattr(recipe, name) for name in fields}, **plan)


def train(
    plan: TrainingPlan,
    progress: ProgressFn | None = None,
    quiet: bool = False,
    desc: str = "train",
    position: int | None = None,
) -> tuple[Recommender, Curve, StopReason]:
    """Run ``plan``; returns its model with the best check's weights, the learning curve (one row
    per check: its position, wall seconds, train loss since the last check, validation and test
    AUC) and why training stopped. The wall seconds are recorded only: nothing depends on them.

    With ``ema_decay`` > 0 an exponential moving average of the weights
    (``torch.optim.swa_utils``) is what each check scores and what is kept.
    """
    rec, samples, rng = plan.rec, plan.samples, plan.rng
    model = rec.model
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(plan.ema_decay)) if plan.ema_decay else None
    scored = rec.with_model(ema.module) if ema else rec
    optimizer = torch.optim.AdamW(model.parameters(), lr=plan.lr, weight_decay=plan.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, plan.lr_factor)
    max_checks = -(-plan.total_steps // plan.check_every)
    bar = Progress(plan.total_steps, desc, progress, quiet=quiet, position=position)
    curve: Curve = []
    best_auc, best_state = -1.0, None
    stopped: StopReason | None = None
    step, losses = 0, []
    start = time.perf_counter()
    try:
        while stopped is None:
            model.train()
            idx = next(plan.batches)
            kept = rng.random(len(idx)) >= plan.user_dropout
            known = rec.user_known(samples, idx)
            loss = plan.loss(rec, idx, kept if known is None else known & kept)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            if ema is not None:
                ema.update_parameters(model)
            step += 1
            losses.append(loss.item())
            bar.update(1, **plan.position(step), loss=float(np.mean(losses[-50:])))
            if step % plan.check_every and step < plan.total_steps:
                continue
            aucs = {
                name: utility(samples.label[checked], scored.predict(samples, checked, plan.check_batch))["auc"] or 0.0
                for name, checked in plan.checked.items()
            }
            elapsed = time.perf_counter() - start
            where = plan.position(step)
            curve.append(
                {
                    **where,
                    "seconds": round(elapsed, 1),
                    "train_loss": float(np.mean(losses)),
                    "valid_auc": aucs["valid"],
                    "test_auc": aucs["test"],
                }
            )
            losses = []
            if bar.bar is not None:
                place = " ".join(f"{k} {v:g}" for k, v in where.items())
                bar.bar.write(
                    f"[{desc}] {place}: {elapsed:.0f}s loss {curve[-1]['train_loss']:.4f} valid AUC "
                    f"{aucs['valid']:.4f} test AUC {aucs['test']:.4f}"
                )
            if aucs["valid"] > best_auc:
                best_auc, best_state = (
                    aucs["valid"],
                    {k: v.detach().clone() for k, v in scored.model.state_dict().items()},
                )
            stopped = stop_reason([row["valid_auc"] for row in curve], max_checks, plan.patience)
        bar.update(plan.total_steps - bar.done)
    finally:
        bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return rec, curve, stopped
