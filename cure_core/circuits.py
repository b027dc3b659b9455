"""Circuit discovery on the recommender: prompts of a request's sets, cached attributions,
circuits with faithfulness measured on held-out prompts, forget vs retain.

The attribution engine itself is model-agnostic (``analysis``); this module supplies what is
specific to the recommender: which samples, which corruption, which metric, and the cache.

Each set's samples are drawn once with the settings' seed and split in two disjoint parts:
``n_prompts`` for attribution (which ranks the edges) and ``n_eval`` for faithfulness (which
judges the circuit chosen from that ranking), so F is never measured on the prompts that
chose the circuit.
"""

from __future__ import annotations

import io
import json
import re
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from analysis.attribution import Attribution, Method
from analysis.circuit import Circuit, Selection, select, size_curve
from analysis.distributed import attribute_sharded, faithfulness_sharded, shard
from analysis.export import CircuitDocument, document
from analysis.faithfulness import Faithfulness, curve_sizes
from analysis.graph import GraphShape
from analysis.prompts import LogitDiff, PromptBatch
from cure_core.cache import atomic_write_bytes, cache_dir
from cure_core.cache_keys import cache_key
from cure_core.controls import control_set
from cure_core.data.samples import Samples
from cure_core.errors import CureError
from cure_core.model.backends import Corruption
from cure_core.model.recommender import Recommender
from cure_core.progress import Progress, ProgressFn
from cure_core.requests import ForgetRequest, RequestSets
from cure_core.runtime import ONE_PROCESS, Runtime
from cure_core.settings import Seed
from cure_core.text_corruptions import PromptBatches

if TYPE_CHECKING:
    from cure_core.workspace import Workspace

SetName = Literal["forget", "retain"]
SET_NAMES: tuple[SetName, ...] = ("forget", "retain")


class AttributionSettings(BaseModel):
    """Everything that changes an attribution result (part of its cache key)."""

    model_config = ConfigDict(extra="forbid")

    method: Method = Field("eap-ig", description="EAP (one gradient) or EAP-IG (integrated gradients)")
    steps: int = Field(5, ge=1, le=200, description="EAP-IG interpolation steps")
    corruption: Literal["history", "target", "user"] = Field(
        "history", description="history: another user's history; target: another item; user: the unknown-user token"
    )
    metric: Literal["signed", "margin"] = Field(
        "signed",
        description=(
            "signed: logit(Yes) - logit(No) times +1/-1 by label, so clean prompts score high; margin: unsigned"
        ),
    )
    n_prompts: int = Field(512, ge=1, description="prompts per set for attribution")
    n_eval: int = Field(256, ge=1, description="other prompts of the set for faithfulness")
    batch_size: int = Field(32, ge=1, description="prompts per forward pass")
    seed: Seed = Field(0, description="seed of the prompt draw")

    def key(self) -> str:
        return cache_key("attribution", self)


def split_prompts(indices: np.ndarray, settings: AttributionSettings) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint (attribution, evaluation) samples of one set; a set smaller than
    ``n_prompts + n_eval`` is split two to one."""
    rng = np.random.default_rng(settings.seed)
    drawn = rng.permutation(indices)
    if len(drawn) < 2:
        raise CureError(
            f"the set has {len(drawn)} sample(s)",
            "circuit discovery needs at least 2 samples per set; choose a larger request",
        )
    if len(drawn) < settings.n_prompts + settings.n_eval:
        cut = max(1, round(len(drawn) * 2 / 3))
        return np.sort(drawn[:cut]), np.sort(drawn[cut:])
    return np.sort(drawn[: settings.n_prompts]), np.sort(
        drawn[settings.n_prompts : settings.n_prompts + settings.n_eval]
    )


def prompt_batches(
    rec: Recommender, samples: Samples, idx: np.ndarray, request: ForgetRequest, settings: AttributionSettings
) -> PromptBatches:
    """Clean/corrupted token-id pairs of samples ``idx`` in batches (seeded), as the model's
    backend corrupts its prompts: item tokens in place, every sample kept; words by same-length
    swaps, left padded, samples without a same-length pair dropped with a warning (the result's
    ``idx`` / ``dropped`` say which samples the batches hold)."""
    rng = np.random.default_rng(settings.seed + 1)
    size = settings.batch_size

    def weight(held: np.ndarray) -> torch.Tensor:
        return (
            torch.ones(len(held))
            if settings.metric == "margin"
            else torch.from_numpy(2.0 * samples.label[held] - 1).float()
        )

    return rec.backend.corrupted_batches(rec, Corruption(settings.corruption, samples, idx, request, rng, weight, size))


def answer_metric(rec: Recommender) -> LogitDiff:
    return LogitDiff(rec.encoder.yes_id, rec.encoder.no_id)


# --- cache ----------------------------------------------------------------------------------


def attribution_path(rec: Recommender, request: ForgetRequest, set_name: str, settings: AttributionSettings) -> Path:
    """``cache/attributions/<weights>/<request>/<set>-<settings>.npz``: keyed by the model's
    identity (its card's ``fingerprint``), the data (inside the request id), the request, the
    set and every setting."""
    weights = str(rec.card.fingerprint or "unknown")[:12]
    return cache_dir("attributions", weights, request.id) / f"{set_name}-{settings.key()}.npz"


def save_attribution(result: Attribution, path: Path) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        scores=result.scores,
        batch_scores=result.batch_scores,
        metric_clean=result.metric_clean,
        metric_corrupt=result.metric_corrupt,
        header=np.array(
            json.dumps(
                {
                    "n_layers": result.shape.n_layers,
                    "n_heads": result.shape.n_heads,
                    "n_kv_heads": result.shape.kv_heads,
                    "method": result.method,
                    "steps": result.steps,
                    "settings": result.settings,
                }
            )
        ),
    )
    atomic_write_bytes(path, buffer.getvalue())


def load_attribution(path: Path) -> Attribution | None:
    """The cached result, or ``None`` when missing; a corrupt file is deleted and reported.

    A header without ``n_kv_heads`` (written before grouped-query attention was supported) reads
    as plain multi-head attention; scores that do not fit the header's graph count as corrupt.
    """
    if not path.exists():
        return None
    try:
        with np.load(path) as data:
            header = json.loads(str(data["header"]))
            shape = GraphShape(header["n_layers"], header["n_heads"], header.get("n_kv_heads"))
            if data["scores"].shape != (shape.n_src, shape.n_dst):
                raise ValueError(f"scores of shape {data['scores'].shape} do not fit a {shape} graph")
            return Attribution(
                shape=shape,
                method=header["method"],
                steps=header["steps"],
                scores=data["scores"],
                batch_scores=data["batch_scores"],
                metric_clean=data["metric_clean"],
                metric_corrupt=data["metric_corrupt"],
                settings=header["settings"],
            )
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as err:
        warnings.warn(f"cached attribution {path.name} is unreadable ({err}); recomputing it", stacklevel=2)
        path.unlink(missing_ok=True)
        return None


# --- running --------------------------------------------------------------------------------


@dataclass
class CircuitContext:
    """The model, its bridge, the request and the sets: what every circuit computation needs.

    ``max_memory`` (bytes) bounds an attribution pass's working set (``analysis.attribution.
    plan_passes``). It changes how the work is split, never the scores, so it is no setting and
    no part of the cache key. ``runtime``: the processes that share the work (``cure_core.runtime``)."""

    rec: Recommender
    bridge: Any
    samples: Samples
    request: ForgetRequest
    sets: RequestSets
    max_memory: int | None = None
    runtime: Runtime = ONE_PROCESS

    def set_indices(self, set_name: str) -> np.ndarray:
        """``forget``, ``retain``, or ``control``/``control-N``: matched control draw N (0)."""
        if set_name in SET_NAMES:
            return getattr(self.sets, set_name)
        match = re.fullmatch(r"control(?:-(\d+))?", set_name)
        if match is None:
            raise CureError(
                f"unknown set {set_name!r}", "use forget, retain, or control-N (a matched control draw, e.g. control-0)"
            )
        return control_set(self.request, self.samples, self.sets, int(match[1] or 0))

    def batches(
        self, set_name: str, settings: AttributionSettings, part: Literal["attribution", "eval"]
    ) -> list[PromptBatch]:
        attribution_idx, eval_idx = split_prompts(self.set_indices(set_name), settings)
        idx = attribution_idx if part == "attribution" else eval_idx
        return prompt_batches(self.rec, self.samples, idx, self.request, settings)


def get_attribution(
    ctx: CircuitContext,
    set_name: str,
    settings: AttributionSettings,
    progress: ProgressFn | None = None,
    quiet: bool = False,
    force: bool = False,
) -> Attribution:
    """Cached attribution of one set, computed (with a progress bar) when missing.

    Over several processes each computes its shard and holds the whole result; rank 0 alone
    reads the cache and writes it (``ctx.runtime``)."""
    path = attribution_path(ctx.rec, ctx.request, set_name, settings)
    runtime = ctx.runtime
    cached = runtime.share(None if force or not runtime.is_main else load_attribution(path))
    if cached is not None:
        return cached
    batches = ctx.batches(set_name, settings, "attribution")
    bar = shard_progress(runtime, batches, f"{settings.method} on {set_name}", progress, quiet)
    try:
        with ctx.rec.lock:  # hooks on a bridge that other app sessions share (Recommender.lock)
            result = attribute_sharded(
                ctx.bridge,
                batches,
                answer_metric(ctx.rec),
                settings.method,
                settings.steps,
                settings={
                    "set": set_name,
                    "request": ctx.request.id,
                    **settings.model_dump(),
                    "dropped_pairs": batches.dropped,
                },
                progress=lambda done: bar.update(done - bar.done),
                max_memory=ctx.max_memory,
            )
    finally:
        bar.close()
    if runtime.is_main:
        save_attribution(result, path)
    return result


def shard_progress(
    runtime: Runtime, batches: list[PromptBatch], desc: str, callback: ProgressFn | None, quiet: bool
) -> Progress:
    """A progress bar over this process's shard of ``batches``, drawn by rank 0 (whose shard is largest)."""
    total = sum(len(batches[i]) for i in shard(len(batches), runtime.rank, runtime.world_size))
    label = f"{desc} (rank 0 of {runtime.world_size})" if runtime.world_size > 1 else desc
    return Progress(total, label, callback, quiet or not runtime.is_main)


@dataclass
class CircuitResult:
    """A selected circuit of one set with its exact faithfulness on held-out prompts."""

    set_name: str
    circuit: Circuit
    faithfulness: Faithfulness
    curve: list[tuple[int, Faithfulness]]  # (requested size, F of the pruned top-n circuit)


def find_circuit(
    ctx: CircuitContext,
    attribution: Attribution,
    set_name: str,
    settings: AttributionSettings,
    how: Selection = "top-n",
    value: float = 100,
    curve_points: int = 12,
    progress: ProgressFn | None = None,
    quiet: bool = False,
) -> CircuitResult:
    """Select a circuit from ``attribution`` and measure it and a size curve on eval prompts."""
    shape = attribution.shape
    circuit = select(shape, attribution.scores, how, value)
    sizes = curve_sizes(shape.n_edges, curve_points) if curve_points else []
    values = measure_circuits(
        ctx, set_name, settings, [circuit, *size_curve(shape, attribution.scores, sizes)], progress, quiet
    )
    return CircuitResult(set_name, circuit, values[0], list(zip(sizes, values[1:], strict=True)))


def measure_circuits(
    ctx: CircuitContext,
    set_name: str,
    settings: AttributionSettings,
    circuits: list[Circuit],
    progress: ProgressFn | None = None,
    quiet: bool = False,
) -> list[Faithfulness]:
    """Exact faithfulness of each circuit on the set's evaluation prompts (disjoint from the
    prompts whose attribution chose the circuits)."""
    batches = ctx.batches(set_name, settings, "eval")
    bar = shard_progress(ctx.runtime, batches, f"faithfulness on {set_name}", progress, quiet)
    try:
        with ctx.rec.lock:
            return faithfulness_sharded(
                ctx.bridge, batches, answer_metric(ctx.rec), circuits, progress=lambda done: bar.update(done - bar.done)
            )
    finally:
        bar.close()


def circuit_context(
    ws: Workspace,
    request: ForgetRequest,
    device: str | None = None,
    max_memory: int | None = None,
    runtime: Runtime = ONE_PROCESS,
) -> CircuitContext:
    """The Original model of ``ws`` (trained if missing) with its bridge, ready for ``request``
    and shared by the processes of ``runtime``.

    An item model's bridge runs on ``device`` (default: the runtime's, else CUDA when present,
    else CPU); a user's checkpoint is wrapped where it was loaded (``--device``)."""
    rec = ws.models.original()
    bridge = rec.bridge(device or runtime.device)
    return CircuitContext(rec, bridge, ws.data.samples, request, ws.data.sets(request), max_memory, runtime)


def circuit_document(
    result: CircuitResult, attributions: dict[str, Attribution], settings: AttributionSettings, how: str, value: float
) -> CircuitDocument:
    """The export document of one set's circuit, with every set's scores on its edges."""
    return document(
        result.circuit,
        {name: a.scores for name, a in attributions.items()},
        {name: a.node_scores for name, a in attributions.items()},
        primary=result.set_name,
        settings={
            **settings.model_dump(),
            "selection": how,
            "selection_value": value,
            "faithfulness": result.faithfulness.value,
        },
    )
