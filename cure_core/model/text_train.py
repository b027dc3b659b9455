"""Training the text-mode recommender of :class:`~cure_core.model.text_recipe.TextRecipe`.

1. A byte-level BPE tokenizer is trained on a seeded draw of the model's *own* training prompts
   (Retrain's never sees the forget users' prompts, so its vocabulary cannot carry them either).
2. A randomly initialised GPT-2 / Llama learns the answer word after each prompt (cross-entropy
   over the full vocabulary at the answer position, as the item model does), plus — weighted by
   ``rating_loss`` — the next-token loss on every rating word of the history (the tokens that tell
   a liked entry from a disliked one). A prompt then teaches up to eleven ratings instead of one;
   that is what makes a few epochs' worth of learning fit in minutes on a CPU.
3. Every ``eval_every`` steps the validation AUC of a fixed seeded draw decides the best weights
   and the stop (patience), never wall time; test AUC of a fixed draw is recorded for the curve.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace

import numpy as np
import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

from cure_core.data.dataset import RatingsDataset
from cure_core.data.samples import Samples
from cure_core.errors import CureError
from cure_core.metrics import utility
from cure_core.model.example_checkpoint import train_tokenizer
from cure_core.model.recommender import Recommender
from cure_core.model.text_recipe import TextRecipe
from cure_core.model.train import StopReason, TrainSets, seed_everything, stop_reason
from cure_core.profiles import ProfileEncoder, PromptWriter, load_profile
from cure_core.progress import Progress, ProgressFn

N_POSITIONS = 512
NEW_USER_SHARE = 0.1  # of the tokenizer's corpus written for "a new user", as training writes some


def text_tokenizer(
    writer: PromptWriter, samples: Samples, train: np.ndarray, recipe: TextRecipe
) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on a seeded draw of the training prompts, each followed by its
    answer (the text the model learns), so the answer words get tokens of their own."""
    rng = np.random.default_rng(recipe.seed)
    draw = rng.choice(train, size=min(recipe.tokenizer_prompts, len(train)), replace=False)
    known = rng.random(len(draw)) >= NEW_USER_SHARE
    profile = writer.profile
    texts = [
        writer.prompt(samples, int(i), bool(k)) + (profile.yes if samples.label[i] else profile.no)
        for i, k in zip(draw, known, strict=True)
    ]
    return train_tokenizer(texts, vocab_size=recipe.vocab_size)


def rating_token_ids(encoder: ProfileEncoder, samples: Samples) -> torch.Tensor:
    """The tokens that tell ratings apart in the history: sample 0 written with every entry
    liked at 5 stars, 4 stars, and disliked at 3 and 2 stars; the tokens where these equal-length
    writings differ. Empty when the writings differ in length (then no rating loss applies)."""
    base = encoder.slots(samples, 0)
    k = len(base.history)
    writings = [
        encoder.token_ids([encoder.write(replace(base, likes=(liked,) * k, stars=(stars,) * k))])[0]
        for liked, stars in ((True, 5), (True, 4), (False, 3), (False, 2))
    ]
    if len({len(w) for w in writings}) != 1:
        return torch.zeros(0, dtype=torch.long)
    rows = torch.tensor(writings)
    differs = (rows != rows[0]).any(0)
    return torch.unique(rows[:, differs])


def train_text_model(
    dataset: RatingsDataset,
    samples: Samples,
    sets: TrainSets,
    recipe: TextRecipe,
    progress: ProgressFn | None = None,
    quiet: bool = False,
    desc: str = "train",
    position: int | None = None,
) -> tuple[Recommender, list[dict[str, float]], StopReason]:
    """Train the text model (see the module docstring); returns it with the best validation
    check's weights, the learning curve (one row per check) and why training stopped."""
    seed_everything(recipe.seed)
    profile = load_profile(recipe.profile)
    writer = PromptWriter(profile, dataset, samples)
    tokenizer = text_tokenizer(writer, samples, sets.train, recipe)
    encoder = ProfileEncoder(profile, tokenizer, dataset, samples)
    model = AutoModelForCausalLM.from_config(recipe.hf_config(len(tokenizer), N_POSITIONS), attn_implementation="sdpa")
    rec = Recommender(model=model, encoder=encoder, known_users=None)
    ratings = rating_token_ids(encoder, samples) if recipe.rating_loss else torch.zeros(0, dtype=torch.long)
    rng = np.random.default_rng(recipe.seed)
    probes = {
        name: np.sort(rng.choice(idx, size=min(recipe.eval_samples, len(idx)), replace=False))
        for name, idx in (("valid", sets.valid), ("test", sets.test))
    }
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    warmup = max(1, min(100, recipe.max_steps // 10))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: (
            min(1.0, (s + 1) / warmup) * max(0.05, 0.5 * (1 + math.cos(math.pi * min(1.0, s / recipe.max_steps))))
        ),
    )
    answers = torch.tensor([encoder.no_id, encoder.yes_id])
    max_checks = math.ceil(recipe.max_steps / recipe.eval_every)
    bar = Progress(recipe.max_steps, desc, progress, quiet=quiet, position=position)
    curve: list[dict[str, float]] = []
    best_auc, best_state, stopped = -1.0, None, None
    order, cursor, step, losses = rng.permutation(sets.train), 0, 0, []
    start = time.perf_counter()
    try:
        while stopped is None:
            if cursor + recipe.batch_size > len(order):
                order, cursor = rng.permutation(sets.train), 0
            idx = order[cursor : cursor + recipe.batch_size]
            cursor += recipe.batch_size
            known = rng.random(len(idx)) >= recipe.user_dropout
            loss = _step_loss(rec, samples, idx, known, answers, ratings, recipe)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            step += 1
            losses.append(loss.item())
            bar.update(1, loss=float(np.mean(losses[-50:])))
            if step % recipe.eval_every and step < recipe.max_steps:
                continue
            aucs = {
                name: utility(samples.label[p], rec.predict(samples, p))["auc"] or 0.0 for name, p in probes.items()
            }
            elapsed = time.perf_counter() - start
            curve.append(
                {
                    "step": step,
                    "epoch": round(step * recipe.batch_size / len(sets.train), 3),
                    "seconds": round(elapsed, 1),
                    "train_loss": float(np.mean(losses)),
                    "valid_auc": aucs["valid"],
                    "test_auc": aucs["test"],
                }
            )
            losses = []
            if bar.bar is not None:
                bar.bar.write(
                    f"[{desc}] step {step}: {elapsed:.0f}s loss {curve[-1]['train_loss']:.4f} valid AUC "
                    f"{aucs['valid']:.4f} test AUC {aucs['test']:.4f}"
                )
            if aucs["valid"] > best_auc:
                best_auc, best_state = aucs["valid"], {k: v.detach().clone() for k, v in model.state_dict().items()}
            # a check falls on every eval_every-th step and on max_steps: the last is check max_checks
            stopped = stop_reason([row["valid_auc"] for row in curve], max_checks, recipe.patience)
        bar.update(bar.total - bar.done)
    finally:
        bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return rec, curve, stopped


def _step_loss(
    rec: Recommender,
    samples: Samples,
    idx: np.ndarray,
    known: np.ndarray,
    answers: torch.Tensor,
    ratings: torch.Tensor,
    recipe: TextRecipe,
) -> torch.Tensor:
    """The answer loss of one batch, plus the weighted rating-word loss of its histories."""
    batch = rec.encode(samples, idx, known)
    if batch.input_ids.shape[1] > N_POSITIONS:
        raise CureError(
            f"a prompt of {batch.input_ids.shape[1]} tokens exceeds the text model's {N_POSITIONS} positions",
            "use the compact profile, or a larger vocab_size so that titles take fewer tokens",
        )
    ids, mask = batch.input_ids, batch.attention_mask
    rec.model.train()
    with torch.autocast(rec.device.type, dtype=torch.bfloat16, enabled=recipe.train_precision == "bf16-mixed"):
        hidden = rec.model.base_model(
            input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0)
        ).last_hidden_state
        unembed = rec.model.get_output_embeddings()
        loss = torch.nn.functional.cross_entropy(unembed(hidden[:, -1]).float(), answers[samples.label[idx]])
        if len(ratings):
            following = ids[:, 1:]
            hit = torch.isin(following, ratings) & mask[:, 1:].bool()
            if hit.any():
                rating_logits = unembed(hidden[:, :-1][hit]).float()
                loss = loss + recipe.rating_loss * torch.nn.functional.cross_entropy(rating_logits, following[hit])
    return loss
