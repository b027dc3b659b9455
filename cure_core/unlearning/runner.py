"""The unlearning loop shared by every method: always on a copy of the original model.

:class:`UnlearnRun` does it in three parts. **Setup**: the copy, its parameters as one flat
vector, the method's group masks (CURE-style: forget-specific rows reset first when asked),
the optimiser and the seeded probe sets. **Step**: a forget batch and a retain batch (seeded),
the method's forget and retain objectives, their gradients g_f and g_r as flat vectors, the
method's direction, one Adam step (learning rate = strength, no weight decay, so entries whose
direction stays zero never move). **Probe**: AUC on the forget and test probes every
``probe_every`` steps. The callback gets each step's row (losses, gradient cosine per group,
probe AUCs). A non-finite or exploding loss stops the run with a clear error; the original
model is never touched.

Over several processes (``accelerate launch --multi_gpu --num_processes N``; a
:class:`~cure_core.runtime.ProcessGroup`) every process draws the same global batch (the run's
seed is the same everywhere), scores only its contiguous share of the rows, and the forget and
retain gradients are averaged across processes *separately*, each with its own all-reduce,
before the method combines them. PCGrad, SAGO and CURE's per-group rules are not linear in
(g_f, g_r), so reducing the combined direction (what DDP's backward hook does with one loss)
would not be the single-process update; reducing each objective's gradient is. The gradients
come from ``torch.autograd.grad`` on the flat parameter list, which DDP's reducer never sees, so
the reduction is an explicit all-reduce of the flat vector weighted by each process's share of
rows: Σ_r (n_r / N)·ḡ_r is exactly the gradient of the mean loss over the N rows of the global
batch. After it every process holds the same direction and takes the same Adam step, so the
copies never drift apart and no parameters are broadcast. Only rank 0 probes.

With ``config.lora`` (:mod:`~cure_core.unlearning.lora`) the copy is wrapped in a fresh LoRA
adapter and only the adapter trains: the flat vectors, masks and counts are over its ``lora_A``/
``lora_B`` entries, and every reference (π_ref, the retain KL, the teacher) is the copy itself
with the adapter disabled.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from cure_core.checkpoints.copies import plain_copy
from cure_core.data.samples import Samples
from cure_core.errors import CureError
from cure_core.groups import ModuleGroups
from cure_core.metrics import utility
from cure_core.model.recommender import Recommender
from cure_core.requests import ForgetRequest, RequestSets
from cure_core.runtime import ONE_PROCESS, Runtime
from cure_core.unlearning import lora
from cure_core.unlearning.combine import cosine
from cure_core.unlearning.masks import flat_group_masks, reset_forget_rows
from cure_core.unlearning.methods import METHODS, Batch, GroupMasks, UnlearnConfig

StepCallback = Callable[[dict[str, Any]], None]
MAX_LOSS = 1e4


class UnlearningDiverged(CureError):
    """The loss became NaN/inf or exploded; the run stopped and the original is intact."""


@dataclass
class UnlearnResult:
    """A finished run. ``model``: the unlearned copy (with ``lora``, a ``PeftModel`` whose adapter
    is active). ``params_updated`` of ``params_total``: entries the run moved, of all it could
    (the adapter's, with ``lora``); ``trainable_params``: how many the optimiser held."""

    model: Recommender
    config: UnlearnConfig
    history: list[dict[str, Any]]
    seconds: float
    params_updated: int
    params_total: int
    peak_memory_mib: float
    trainable_params: int
    mode: Literal["full", "lora"]
    groups_used: dict[str, int] = field(default_factory=dict)


class UnlearnRun:
    """One run of ``config.method`` on a copy of ``original``: built by setup, advanced by
    :meth:`step`, measured by :meth:`probe`; :meth:`result` once done. ``runtime``: the
    processes that share every batch (one process does the whole batch by default)."""

    def __init__(
        self,
        original: Recommender,
        samples: Samples,
        sets: RequestSets,
        request: ForgetRequest,
        config: UnlearnConfig,
        groups: ModuleGroups | None = None,
        runtime: Runtime = ONE_PROCESS,
    ) -> None:
        self.method = METHODS[config.method].for_run(config)
        self.runtime = runtime
        check_batch_size(config.batch_size, runtime)
        for name in ("forget", "retain"):
            check_pool(name, len(getattr(sets, name)), config.batch_size, runtime)
        if self.method.needs_groups and groups is None:
            raise CureError(
                "CURE-style unlearning needs module groups",
                "compute them first (`cure groups`), or let `cure unlearn` do it",
            )
        lora.check_config(config, self.method.needs_groups)
        self.original, self.samples, self.sets, self.request, self.config = original, samples, sets, request, config
        torch.manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed)
        with original.lock:  # a model other app sessions share: copied while no hooked run holds it
            original.model.eval()
            # a plain copy: working out the groups may have booted the bridge on a user's checkpoint,
            # which wraps its modules in place; the student trains and saves the Hugging Face modules
            model = lora.wrap(original.model, config) if config.lora else plain_copy(original.model).eval()
        self.student = self._student(model)
        # the references: the original, or (LoRA) the student itself with its adapter disabled
        self.reference = self.student if config.lora else original
        self.answer_ids = (original.encoder.yes_id, original.encoder.no_id)
        self.answer_token = torch.tensor([original.encoder.no_id, original.encoder.yes_id], device=self.student.device)
        self.params = lora.trainable(model) if config.lora else list(model.parameters())
        for p in self.params:
            p.requires_grad_(True)
        self.masks, self.groups_used, self.touched = self._group_masks(groups)
        self.touched = self.touched.to(self.student.device)
        if self.masks is not None:
            device = self.student.device
            self.masks = GroupMasks(*(m.to(device) for m in (self.masks.forget, self.masks.retain, self.masks.shared)))
        self.optimizer = torch.optim.Adam(self.params, lr=config.strength)
        probe_rng = np.random.default_rng(config.seed + 1)
        self.probes = {
            name: np.sort(probe_rng.choice(idx, size=min(config.probe_size, len(idx)), replace=False))
            for name, idx in (("forget", sets.forget), ("test", sets.test))
            if len(idx)
        }
        self.history: list[dict[str, Any]] = []

    def _student(self, model: torch.nn.Module) -> Recommender:
        """The copy as a recommender reading prompts as the original does."""
        return self.original.with_model(model)  # type: ignore[arg-type]

    def _reference_mode(self) -> AbstractContextManager[Any]:
        """Where the reference logits are computed: the adapter disabled in LoRA mode."""
        return self.student.model.disable_adapter() if self.config.lora else nullcontext()

    def _group_masks(self, groups: ModuleGroups | None) -> tuple[GroupMasks | None, dict[str, int], torch.Tensor]:
        """The method's group masks (``None`` without groups), the group sizes used, and the
        entries touched so far (the reset rows, if any)."""
        untouched = torch.zeros(sum(p.numel() for p in self.params), dtype=torch.bool)
        if not self.method.needs_groups or groups is None:
            return None, {}, untouched
        groups = self.method.module_groups(groups, self.config.seed)
        model = self.student.model
        if self.config.lora:
            masks, sizes = lora.group_rules(model, self.original.model, groups, self.config)
            reset = None
        else:
            names = [n for n, _ in model.named_parameters()]
            vocab_index = getattr(getattr(self.original.encoder, "vocab", None), "index", None)
            masks, sizes = flat_group_masks(model, groups, vocab_index, names)
            reset = (
                reset_forget_rows(model, groups, self.original.encoder, names)
                if self.config.row_rule == "reset"
                else None
            )
        if reset is not None:
            masks.forget &= ~reset
        if not (masks.forget.any() or masks.shared.any() or (reset is not None and reset.any())):
            rows = "; with --lora, embedding rows are no LoRA target" if self.config.lora else ""
            raise CureError(
                "the module groups leave nothing for the forget update (no forget-specific and no task-shared "
                f"module{rows})",
                "lower the group threshold or use another corruption (`cure groups --help`)",
            )
        return masks, sizes, reset.clone() if reset is not None else untouched

    def _batch(self, idx: np.ndarray, teacher: bool) -> Batch:
        encoded = self.student.encode(self.samples, idx)
        logits = self.student.last_logits(encoded)
        reference = self.reference
        with torch.no_grad(), self._reference_mode():
            ref = reference.last_logits(encoded)
            forced = None
            if teacher:
                forced = (
                    reference.last_logits(reference.encode(self.samples, idx, np.zeros(len(idx), dtype=bool)))
                    if self.request.kind == "user"
                    else torch.zeros_like(ref)
                )
        return Batch(logits, self.answer_token[self.samples.label[idx]], ref, forced)

    def _draw(self, pool: np.ndarray) -> np.ndarray:
        """The step's global batch: the same rows on every process (same seed, same draws)."""
        return self.rng.choice(pool, size=min(self.config.batch_size, len(pool)), replace=False)

    def _reduce(self, value: torch.Tensor, local: np.ndarray, batch: np.ndarray) -> torch.Tensor:
        """A loss or gradient of this process's mean over ``local`` as the mean over ``batch``."""
        return self.runtime.mean(value, len(local), len(batch))

    def _flat(self, loss: torch.Tensor) -> torch.Tensor:
        grads = torch.autograd.grad(loss, self.params, allow_unused=True)
        return torch.cat(
            [(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, self.params, strict=True)]
        )

    def step(self, step: int) -> dict[str, Any]:
        """One update; returns the step's row (losses and gradient cosines, no probe yet)."""
        method = self.method
        f_idx = self._draw(self.sets.forget)
        f_local = self.runtime.split_rows(f_idx)
        forget_loss = method.forget_objective(self._batch(f_local, method.uses_teacher()), self.answer_ids)
        g_f = self._reduce(self._flat(forget_loss), f_local, f_idx)
        forget_loss = self._reduce(forget_loss, f_local, f_idx)
        r_idx = self._draw(self.sets.retain)
        r_local = self.runtime.split_rows(r_idx)
        retain_loss = method.retain_objective(self._batch(r_local, False), self.answer_ids)
        g_r = (
            self._reduce(self._flat(retain_loss), r_local, r_idx) if retain_loss is not None else torch.zeros_like(g_f)
        )
        if retain_loss is not None:
            retain_loss = self._reduce(retain_loss, r_local, r_idx)
        losses = [float(forget_loss.detach())] + ([float(retain_loss.detach())] if retain_loss is not None else [])
        if not all(np.isfinite(losses)) or max(abs(v) for v in losses) > MAX_LOSS:
            raise UnlearningDiverged(
                f"{method.label} diverged at step {step} (forget loss "
                f"{losses[0]:.3g}{f', retain loss {losses[1]:.3g}' if len(losses) > 1 else ''})",
                "lower --strength or --steps; the original model is unchanged",
            )
        direction = method.direction(g_f, g_r, self.masks)
        self.touched |= direction != 0
        offset = 0
        for p in self.params:
            n = p.numel()
            p.grad = direction[offset : offset + n].view_as(p).clone()
            offset += n
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        row: dict[str, Any] = {
            "step": step,
            "forget_loss": losses[0],
            "retain_loss": losses[1] if len(losses) > 1 else None,
            "cos_all": cosine(g_f, g_r),
        }
        if self.masks is not None:
            for key, mask in (
                ("forget", self.masks.forget),
                ("retain", self.masks.retain),
                ("shared", self.masks.shared),
            ):
                row[f"cos_{key}"] = cosine(g_f[mask], g_r[mask]) if mask.any() else None
        return row

    def probe(self) -> dict[str, float | None]:
        """AUC of the model so far on each probe set (``forget_auc``, ``test_auc``); on rank 0
        only in a data-parallel run (every rank holds the same weights)."""
        if not self.runtime.is_main:
            return {}
        return {
            f"{name}_auc": utility(self.samples.label[idx], self.student.predict(self.samples, idx))["auc"]
            for name, idx in self.probes.items()
        }

    def run(self, callback: StepCallback | None = None) -> UnlearnResult:
        """Every step, probing every ``probe_every`` steps and after the last."""
        start = time.perf_counter()
        for step in range(1, self.config.steps + 1):
            row = self.step(step)
            if step % self.config.probe_every == 0 or step == self.config.steps:
                row.update(self.probe())
            self.history.append(row)
            if callback is not None:
                callback(row)
        return self.result(time.perf_counter() - start)

    def result(self, seconds: float) -> UnlearnResult:
        for p in self.params:
            p.requires_grad_(False)
        peak = (
            torch.cuda.max_memory_allocated() / 2**20
            if torch.cuda.is_available()
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        )
        return UnlearnResult(
            model=self.student,
            config=self.config,
            history=self.history,
            seconds=seconds,
            params_updated=int(self.touched.sum()),
            params_total=int(self.touched.numel()),
            peak_memory_mib=float(peak),
            trainable_params=sum(p.numel() for p in self.params),
            mode="lora" if self.config.lora else "full",
            groups_used=self.groups_used,
        )


def unlearn(
    original: Recommender,
    samples: Samples,
    sets: RequestSets,
    request: ForgetRequest,
    config: UnlearnConfig,
    groups: ModuleGroups | None = None,
    callback: StepCallback | None = None,
    runtime: Runtime = ONE_PROCESS,
) -> UnlearnResult:
    """Run ``config.method`` on a copy of ``original``; see the module docstring. To cancel,
    raise from ``callback`` (a :class:`~cure_core.jobs.BackgroundJob`'s progress does)."""
    return UnlearnRun(original, samples, sets, request, config, groups, runtime).run(callback)


def check_batch_size(batch_size: int, runtime: Runtime) -> None:
    """Refuse a global batch that the processes cannot share equally."""
    if batch_size % runtime.world_size:
        raise CureError(
            f"--batch-size {batch_size} is not divisible by the {runtime.world_size} processes",
            f"give a multiple of {runtime.world_size} (each process takes batch_size / {runtime.world_size} rows of it)",
        )


def check_pool(name: str, size: int, batch_size: int, runtime: Runtime) -> None:
    """Refuse a set too small to give every process at least one row per step."""
    if runtime.world_size > 1 and min(size, batch_size) < runtime.world_size:
        raise CureError(
            f"the {name} set has {size} rows, fewer than the {runtime.world_size} processes",
            "run with fewer processes (--num_processes) or on a larger request",
        )
