"""Training an item-mode recommender from scratch: loss on the answer token only."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from transformers import AutoModelForCausalLM

from cure_core.data.samples import Samples
from cure_core.metrics import utility
from cure_core.model.recipe import Recipe
from cure_core.model.recommender import Recommender
from cure_core.progress import Progress, ProgressFn
from cure_core.prompts import ItemModeEncoder, ItemVocab


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


StopReason = Literal["patience", "max_epochs"]


def stop_reason(valid_aucs: Sequence[float], max_epochs: int, patience: int) -> StopReason | None:
    """Why training stops after epochs with these validation AUCs, or ``None`` to go on.

    The only stopping rule: ``patience`` epochs in a row without a better validation AUC, or
    ``max_epochs`` reached — never wall-clock time, so a model does not depend on the machine's
    load. A saved curve that ends where this says ``None`` was cut short by something else.
    """
    best, stale = -1.0, 0
    for auc in valid_aucs:
        best, stale = (auc, 0) if auc > best else (best, stale + 1)
    if valid_aucs and stale >= patience:
        return "patience"
    return "max_epochs" if len(valid_aucs) >= max_epochs else None


def train_item_model(
    samples: Samples,
    sets: TrainSets,
    recipe: Recipe,
    progress: ProgressFn | None = None,
    quiet: bool = False,
    desc: str = "train",
    position: int | None = None,
) -> tuple[Recommender, list[dict[str, float]], StopReason]:
    """Train with AdamW and a cosine schedule; keep the epoch with the best *validation* AUC.

    With ``recipe.train_precision == "bf16-mixed"`` the forward and backward passes run under
    bfloat16 autocast; the weights, AdamW state, EMA, evaluation and checkpoint stay float32.

    With ``recipe.ema_decay`` > 0 an exponential moving average of the weights is kept
    (``torch.optim.swa_utils``); it is what is evaluated each epoch and saved.

    Returns the model (best epoch restored), the learning curve (one row per epoch with wall
    seconds, train loss, validation AUC and test AUC) and why training stopped (:func:`stop_reason`).
    Test AUC is recorded for the curve only; nothing is chosen on it, and the wall seconds are
    recorded only: nothing depends on them.
    """
    seed_everything(recipe.seed)
    vocab = ItemVocab.for_samples(samples)
    encoder = ItemModeEncoder(vocab, samples)
    seq_len = 2 * samples.config.history_len + 3
    model = AutoModelForCausalLM.from_config(recipe.hf_config(len(vocab), seq_len))
    rec = Recommender(model=model, encoder=encoder, known_users=sets.known_users)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(recipe.ema_decay)) if recipe.ema_decay else None
    scored = Recommender(model=ema.module, encoder=encoder, known_users=sets.known_users) if ema else rec
    rng = np.random.default_rng(recipe.seed)
    steps_per_epoch = math.ceil(len(sets.train) / recipe.batch_size)
    total_steps = steps_per_epoch * recipe.max_epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    warmup = max(1, steps_per_epoch // 4)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total_steps)))
    )
    targets = torch.tensor([encoder.no_id, encoder.yes_id])
    mixed = recipe.train_precision == "bf16-mixed"
    bar = Progress(total_steps, desc, progress, quiet=quiet, position=position)
    curve: list[dict[str, float]] = []
    best_auc, best_state = -1.0, None
    stopped: StopReason | None = None
    start = time.perf_counter()
    try:
        while stopped is None:
            epoch = len(curve)
            model.train()
            order = rng.permutation(sets.train)
            losses = []
            for step in range(steps_per_epoch):
                idx = order[step * recipe.batch_size : (step + 1) * recipe.batch_size]
                known = rec.user_known(samples, idx) & (rng.random(len(idx)) >= recipe.user_dropout)
                with torch.autocast(rec.device.type, dtype=torch.bfloat16, enabled=mixed):
                    logits = rec.last_logits(rec.encode(samples, idx, known))
                loss = torch.nn.functional.cross_entropy(logits.float(), targets[samples.label[idx]])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                if ema is not None:
                    ema.update_parameters(model)
                losses.append(loss.item())
                bar.update(1, epoch=epoch + 1, loss=float(np.mean(losses[-50:])))
            valid_auc = utility(samples.label[sets.valid], scored.predict(samples, sets.valid))["auc"] or 0.0
            test_auc = utility(samples.label[sets.test], scored.predict(samples, sets.test))["auc"] or 0.0
            elapsed = time.perf_counter() - start
            curve.append(
                {
                    "epoch": epoch + 1,
                    "seconds": round(elapsed, 1),
                    "train_loss": float(np.mean(losses)),
                    "valid_auc": valid_auc,
                    "test_auc": test_auc,
                }
            )
            if bar.bar is not None:
                bar.bar.write(
                    f"[{desc}] epoch {epoch + 1}: {elapsed:.0f}s loss {np.mean(losses):.4f} valid AUC "
                    f"{valid_auc:.4f} test AUC {test_auc:.4f}"
                )
            if valid_auc > best_auc:
                best_auc, best_state = valid_auc, {k: v.detach().clone() for k, v in scored.model.state_dict().items()}
            stopped = stop_reason([row["valid_auc"] for row in curve], recipe.max_epochs, recipe.patience)
        bar.update(total_steps - bar.done)
    finally:
        bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return rec, curve, stopped
