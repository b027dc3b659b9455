"""A causal LM used as a Yes/No recommender, with batched scoring at the answer position."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from transformers import PreTrainedModel

from cure_core.data.samples import Samples
from cure_core.metrics import Predictions
from cure_core.model.card import ModelCard
from cure_core.prompts import EncodedBatch, PromptEncoder

if TYPE_CHECKING:
    from peft import PeftModel

    from cure_core.checkpoints import LoadedCheckpoint
    from cure_core.model.backends.base import Capabilities, ModelBackend


class ModelLock:
    """A re-entrant lock that a copy of its owner does not share: a deep copy gets a new one."""

    def __init__(self) -> None:
        self._lock = threading.RLock()

    def __enter__(self) -> bool:
        return self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    def __deepcopy__(self, memo: dict) -> ModelLock:
        return ModelLock()


@dataclass
class Recommender:
    """An HF causal LM, the prompt format it reads, which users it was trained on, and the
    :class:`~cure_core.model.backends.base.ModelBackend` of its kind.

    ``known_users`` (user codes) decides who is written with their own user token; everyone
    else is ``<unk_user>``. ``None`` means every user is known (prompts in words).
    ``checkpoint`` is set for a model loaded as a Hugging Face checkpoint: its tokenizer and
    what was loaded.
    """

    model: PreTrainedModel | PeftModel  # a PeftModel: a LoRA unlearning run's model, adapter active
    encoder: PromptEncoder
    known_users: np.ndarray | None
    backend: ModelBackend
    card: ModelCard = field(default_factory=ModelCard)
    path: Path | None = None
    checkpoint: LoadedCheckpoint | None = None
    _bridge: Any = field(default=None, repr=False)
    lock: ModelLock = field(default_factory=ModelLock, init=False, repr=False, compare=False)
    """Held by every run of this model and of its bridge. The app shares one
    model between browser sessions, and a hooked run (attribution, faithfulness, ablation)
    changes what every other forward of that model or bridge computes while its hooks hang:
    runs on one model therefore take turns. A copy (``dataclasses.replace``, ``copy.deepcopy``)
    has its own lock."""

    @property
    def capabilities(self) -> Capabilities:
        return self.backend.capabilities

    @property
    def lora(self) -> bool:
        """Whether this is a LoRA run's model: a ``PeftModel`` with its adapter active."""
        from peft import PeftModel

        return isinstance(self.model, PeftModel)

    @property
    def lm(self) -> PreTrainedModel:
        """The causal LM itself: the model, or the LM a LoRA run's ``PeftModel`` wraps (the
        adapter's layers sit inside it, active unless disabled)."""
        return self.model.get_base_model() if self.lora else self.model  # type: ignore[operator, return-value]

    def with_model(self, model: PreTrainedModel | PeftModel) -> Recommender:
        """A recommender of another copy of this model's weights, reading prompts as this one
        does (a loaded checkpoint's record points at the copy's LM); its own lock, no bridge."""
        copy = Recommender(model=model, encoder=self.encoder, known_users=self.known_users, backend=self.backend)
        if self.checkpoint is not None:
            copy.checkpoint = replace(self.checkpoint, model=copy.lm)
        return copy

    def bridge(self, device: str | None = None) -> Any:
        """The model as a TransformerLens ``TransformerBridge``, built once by its backend:
        the bridge runs the very weights :meth:`predict` uses."""
        if self._bridge is None:
            self._bridge = self.backend.bridge(self, device)
        return self._bridge

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def user_known(self, samples: Samples, idx: np.ndarray) -> np.ndarray | None:
        return None if self.known_users is None else np.isin(samples.user[idx], self.known_users)

    def encode(self, samples: Samples, idx: np.ndarray, user_known: np.ndarray | None = None) -> EncodedBatch:
        known = self.user_known(samples, idx) if user_known is None else user_known
        return self.encoder.encode(samples, idx, known)

    def last_logits(self, batch: EncodedBatch) -> torch.Tensor:
        """Full-vocabulary logits at the last (answer) position, ``[n, vocab]``.

        Runs the trunk and applies the unembedding to the last position only, which is most of
        the cost saved in training with a large item vocabulary. A LoRA run's model is a
        ``PeftModel``, whose ``base_model`` is the whole wrapped LM: its trunk is that LM's (the
        adapter's layers sit inside it, active unless disabled).
        """
        lm = self.lm
        ids = batch.input_ids.to(self.device)
        kwargs: dict[str, torch.Tensor] = {}
        if batch.attention_mask is not None:
            mask = batch.attention_mask.to(self.device)
            kwargs = {"attention_mask": mask, "position_ids": (mask.cumsum(-1) - 1).clamp(min=0)}
        with self.lock:
            hidden = lm.base_model(input_ids=ids, **kwargs).last_hidden_state[:, -1]
            return lm.get_output_embeddings()(hidden)

    @contextmanager
    def _eval_mode(self) -> Iterator[None]:
        """Eval mode while held, the train/eval state restored after; holds :attr:`lock`, as
        that state is shared too."""
        with self.lock:
            was_training = self.model.training
            self.model.eval()
            try:
                yield
            finally:
                self.model.train(was_training)

    def answer_logits(self, batch: EncodedBatch) -> torch.Tensor:
        """``[n, 2]`` logits of (Yes, No)."""
        logits = self.last_logits(batch)
        return logits[:, [self.encoder.yes_id, self.encoder.no_id]]

    @torch.inference_mode()
    def predict(self, samples: Samples, idx: np.ndarray, batch_size: int | None = None) -> Predictions:
        """Score samples ``idx`` in eval mode (the model's train/eval state is restored after);
        ``batch_size`` defaults to the backend's (1024 short item prompts, 64 in words).

        Every evaluation (AUC, JSD, MIA) scores through here, so it is built for many prompts:
        batched, under ``inference_mode`` (no autograd bookkeeping at all, unlike ``no_grad``),
        the forward in the model's own dtype (bf16 stays bf16), and the unembedding applied to
        the answer position only (:meth:`last_logits`). Only those ``[batch, vocab]`` logits are
        upcast to float32: the full-vocabulary log-softmax that Min-K%++ needs (mean and std of
        log p) loses too much in bf16.
        """
        batch_size = batch_size or self.capabilities.score_batch
        parts: dict[str, list[np.ndarray]] = {k: [] for k in ("margin", "logp_yes", "logp_no", "logp_mean", "logp_std")}
        with self._eval_mode():
            for start in range(0, len(idx), batch_size):
                logits = self.last_logits(self.encode(samples, idx[start : start + batch_size])).float()
                logp = torch.log_softmax(logits, dim=-1)
                p = logp.exp()
                mean = (p * logp).sum(-1)
                # E[(log p - mean)²], not E[log²p] - mean²: near-uniform answers cancel the latter to
                # a few float32 ulps, which Min-K%++ then divides by
                std = (p * (logp - mean[:, None]).square()).sum(-1).clamp(min=1e-12).sqrt()
                yes, no = logits[:, self.encoder.yes_id], logits[:, self.encoder.no_id]
                for key, value in (
                    ("margin", yes - no),
                    ("logp_yes", logp[:, self.encoder.yes_id]),
                    ("logp_no", logp[:, self.encoder.no_id]),
                    ("logp_mean", mean),
                    ("logp_std", std),
                ):
                    parts[key].append(value.cpu().numpy())
        empty = np.zeros(0, dtype=np.float32)
        return Predictions(**{k: np.concatenate(v) if v else empty for k, v in parts.items()})
