"""Evaluation at real-model shape (random weights): prompts scored per second beside training.

Every evaluation number (utility AUC, JSD to Retrain, the MIA attacks) comes from
``Recommender.predict``: batched, under ``torch.inference_mode``, the forward in the model's
dtype, the unembedding at the answer position only, and just those logits upcast to float32 for
the full-vocabulary log-softmax that Min-K%++ needs. This benchmark runs that very method on the
project's GPT-2 (``Recipe.hf_config``) at GPT-2-small shape (12 layers, 12 heads, d_model 768,
d_mlp 3072; a vocabulary of 1024, the unembedding is not what is measured) over random
128-token prompts, and beside it one training step as the project trains (``cure_core.model.training.train``):
forward through ``last_logits``, answer cross-entropy, backward, AdamW; float32 weights, under
bf16 autocast with ``--dtype bf16``.

Each figure is the median of ``--repeats`` timed runs after a warm-up one. Scoring is timed over
``--batches`` batches of ``--batch`` prompts (one ``predict`` call), training over one step of
``--batch`` samples.

    .venv/bin/python benchmarks/evaluation_scale.py                          # CPU fp32, about a minute
    .venv/bin/python benchmarks/evaluation_scale.py --device cuda --dtype bf16

Ends with ``eval_prompts_per_s_over_train_samples_per_s=``: how many prompts are scored in the
time one training sample takes (a forward alone, without activations kept, against forward +
backward + optimizer).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from cure_core.model.backends import ItemBackend

TOKENS, VOCAB, YES, NO = 128, 1024, 5, 6
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


class RandomPrompts:
    """A prompt encoder over fixed random token ids (what ``Recommender`` asks of one)."""

    yes_id, no_id = YES, NO

    def __init__(self, n: int) -> None:
        g = torch.Generator().manual_seed(1)
        self.ids = torch.randint(8, VOCAB, (n, TOKENS), generator=g)

    def encode(self, samples: object, idx: np.ndarray, user_known: np.ndarray | None = None) -> object:
        from cure_core.prompts import EncodedBatch

        return EncodedBatch(self.ids[torch.as_tensor(idx)])


def build(layers: int, device: str) -> torch.nn.Module:
    """The project's GPT-2 (``Recipe.hf_config``) at GPT-2-small shape without dropout, random
    float32 weights (seeded), on ``device``."""
    from transformers import GPT2LMHeadModel

    from cure_core.model.recipe import Recipe

    recipe = Recipe(arch="gpt2", n_layer=layers, n_head=12, d_model=768, d_mlp=3072, dropout=0)
    torch.manual_seed(0)
    return GPT2LMHeadModel(recipe.hf_config(VOCAB, TOKENS)).to(device)


def recommender(model: torch.nn.Module, prompts: RandomPrompts) -> object:
    from cure_core.model.recommender import Recommender

    return Recommender(model=model, encoder=prompts, known_users=None, backend=ItemBackend())  # type: ignore[arg-type]


def timed(run: Callable[[], None], repeats: int, device: str) -> float:
    """Median seconds of ``repeats`` runs after a warm-up one."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    run()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="fp32", help="scoring dtype; training autocast")
    parser.add_argument("--layers", type=int, default=12, help="12 = the GPT-2-small shape")
    parser.add_argument("--batch", type=int, default=None, help="prompts per batch (default: 8 on CPU, 64 on CUDA)")
    parser.add_argument("--batches", type=int, default=2, help="batches scored per timed run")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs after the warm-up (median)")
    args = parser.parse_args()
    batch = args.batch or (64 if args.device == "cuda" else 8)
    dtype = DTYPES[args.dtype]
    n = batch * args.batches
    prompts = RandomPrompts(n)
    train_model = build(args.layers, args.device)
    score_model = copy.deepcopy(train_model).to(dtype).eval()  # scored in its own dtype, as a saved checkpoint
    print(
        f"GPT-2-small shape ({args.layers} layers, d_model 768, vocabulary {VOCAB}), prompts of {TOKENS} tokens, "
        f"device {args.device}, scoring {args.dtype}, training fp32 weights"
        f"{' + bf16 autocast' if dtype == torch.bfloat16 else ''}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )

    scorer = recommender(score_model, prompts)
    idx = np.arange(n)
    score_s = timed(lambda: scorer.predict(None, idx, batch_size=batch), args.repeats, args.device)  # type: ignore[arg-type]

    trainer = recommender(train_model, prompts)
    optimizer = torch.optim.AdamW(train_model.parameters(), lr=1e-5)
    targets = torch.tensor([NO, YES], device=args.device)[torch.arange(batch, device=args.device) % 2]

    def train_step() -> None:
        train_model.train()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(args.device, dtype=dtype) if dtype != torch.float32 else contextlib.nullcontext():
            logits = trainer.last_logits(prompts.encode(None, np.arange(batch)))
        torch.nn.functional.cross_entropy(logits.float(), targets).backward()
        optimizer.step()

    train_s = timed(train_step, args.repeats, args.device)
    eval_rate, train_rate = n / score_s, batch / train_s
    print(f"  scoring, Recommender.predict ({args.batches} batches of {batch}): {eval_rate:9.1f} prompts/s")
    print(f"  training step, fwd + bwd + AdamW (batch {batch}):     {train_rate:9.1f} samples/s")
    print(f"eval_prompts_per_s_over_train_samples_per_s={eval_rate / train_rate:.2f}")


if __name__ == "__main__":
    main()
