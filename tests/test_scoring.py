"""``Recommender.predict`` at scale: inference mode, the model's own dtype, answer-position logits only."""

from __future__ import annotations

import copy

import numpy as np
import torch
from tolerances import assert_close
from transformers import GPT2Config, GPT2LMHeadModel

from cure_core.model.backends import ItemBackend
from cure_core.model.recommender import Recommender
from cure_core.prompts import EncodedBatch

VOCAB, TOKENS, YES, NO = 64, 12, 5, 6


class RandomPrompts:
    """Fixed random prompts behind the encoder interface ``Recommender`` uses."""

    yes_id, no_id = YES, NO

    def __init__(self, n: int) -> None:
        self.ids = torch.randint(8, VOCAB, (n, TOKENS), generator=torch.Generator().manual_seed(1))

    def encode(self, samples: object, idx: np.ndarray, user_known: np.ndarray | None = None) -> EncodedBatch:
        return EncodedBatch(self.ids[torch.as_tensor(idx)])


def _recommender() -> Recommender:
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=VOCAB, n_positions=TOKENS, n_embd=32, n_layer=2, n_head=2, bos_token_id=2, eos_token_id=3
    )
    model = GPT2LMHeadModel(config).eval()
    return Recommender(model=model, encoder=RandomPrompts(40), known_users=None, backend=ItemBackend())  # type: ignore[arg-type]


def _reference(rec: Recommender, idx: np.ndarray) -> dict[str, np.ndarray]:
    """The scores from the full forward's logits at the last position, in float64."""
    with torch.no_grad():
        logits = rec.model(rec.encoder.encode(None, idx).input_ids).logits[:, -1].double()
    logp = torch.log_softmax(logits, -1)
    mean = (logp.exp() * logp).sum(-1)
    std = (logp.exp() * (logp - mean[:, None]).square()).sum(-1).sqrt()
    return {"margin": (logits[:, YES] - logits[:, NO]).numpy(), "logp_yes": logp[:, YES].numpy(),
            "logp_mean": mean.numpy(), "logp_std": std.numpy()}  # fmt: skip


def test_batched_scores_equal_the_full_forward():
    rec = _recommender()
    idx = np.arange(40)
    preds = rec.predict(None, idx, batch_size=16)  # type: ignore[arg-type]  # 3 batches, the last one short
    for key, value in _reference(rec, idx).items():
        assert_close(getattr(preds, key), value, err_msg=key)


def test_bf16_model_is_scored_in_bf16_and_stays_trainable():
    fp32 = _recommender()
    bf16 = copy.deepcopy(fp32)
    bf16.model.to(torch.bfloat16)
    idx = np.arange(40)
    preds = bf16.predict(None, idx, batch_size=16)  # type: ignore[arg-type]
    assert all(p.dtype == torch.bfloat16 for p in bf16.model.parameters())
    with torch.inference_mode():  # the forward predict runs: bf16 up to the answer-position logits
        assert bf16.last_logits(bf16.encoder.encode(None, idx[:4])).dtype == torch.bfloat16
    # bf16 rounding of a 2-layer random model: margins within 0.05 of the float32 model's
    np.testing.assert_allclose(preds.margin, fp32.predict(None, idx).margin, atol=0.05)  # type: ignore[arg-type]
    assert np.isfinite(preds.logp_std).all() and (preds.logp_std > 0).all()
    # inference mode leaves nothing in the model that autograd refuses: a training step still runs
    rec = _recommender()
    rec.predict(None, idx)  # type: ignore[arg-type]
    rec.model.train()
    loss = rec.last_logits(rec.encoder.encode(None, idx[:8]))[:, YES].mean()
    loss.backward()
    assert rec.model.transformer.h[0].attn.c_attn.weight.grad is not None
