"""Attribution speed on the default recommender, one batch of 32 prompts.

Times, in one run and on the same model and batch: our EAP (the default projected engine, and
the split-input reference engine), our EAP-IG (5 steps), one plain
training step of the recommender (forward + backward of the answer loss, train mode), and
TransformerLens 4.3's own ``attribution_patch(..., EdgeAttributionConfig(granularity="edge"))``.
Each figure is the median of several repeats after a warm-up. As a cross-check it also runs our
EAP in TransformerLens' (denoising) convention — clean and corrupted swapped, so the gradient is
taken on the corrupted run — and compares the two tools edge by edge, summed over positions.

    .venv/bin/python benchmarks/attribution.py [--repeats 5] [--tl-repeats 2]
    CURE_RECIPE='{"train_precision": "fp32"}' .venv/bin/python benchmarks/attribution.py  # another recipe's model

Ends with ``speedup_vs_transformer_lens=``, ``eap_over_train_step=``, ``eapig5_over_eap=`` and
``eap_over_reference_engine=``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from analysis.attribution import attribute
from analysis.hooks import graph_shape
from analysis.prompts import LogitDiff, PromptBatch
from cure_core.circuits import AttributionSettings, circuit_context, prompt_batches, split_prompts
from cure_core.environment import read_environment
from cure_core.workspace import Workspace


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def tl_dense_scores(result, shape) -> np.ndarray:
    """TransformerLens' per-position edge scores summed over positions, in our dense layout."""
    dense = np.zeros((shape.n_src, shape.n_dst))
    for (writer, reader), value in result.edge_scores.items():
        if writer.kind == "embed":
            s = 0
        elif writer.kind == "attn_head_out":
            s = shape.head_src(writer.layer, writer.head)
        else:
            s = shape.mlp_src(writer.layer)
        if reader.kind in ("q_input", "k_input", "v_input"):
            t = shape.head_dst(reader.layer, reader.head, reader.kind[0])
        elif reader.kind == "mlp_in":
            t = shape.mlp_dst(reader.layer)
        else:
            t = shape.logits_dst
        dense[s, t] += value
    return dense


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tl-repeats", type=int, default=2)
    args = parser.parse_args()
    from transformer_lens.tools.analysis.attribution_patching import EdgeAttributionConfig, attribution_patch

    torch.manual_seed(0)
    ws = Workspace.open(recipe=read_environment().recipe)
    request = ws.data.default_request()
    ctx = circuit_context(ws, request, device="cpu")
    settings = AttributionSettings(metric="margin", n_prompts=32, batch_size=32)
    idx, _ = split_prompts(ctx.sets.forget, settings)
    (batch,) = prompt_batches(ctx.rec, ctx.samples, idx[:32], request, settings)
    metric = LogitDiff(ctx.rec.encoder.yes_id, ctx.rec.encoder.no_id)
    bridge = ctx.bridge
    shape = graph_shape(bridge)
    print(
        f"model: {ctx.rec.path.name}, {shape.n_layers} layers × {shape.n_heads} heads, {shape.n_edges} "
        f"edges; batch {len(batch)} × {batch.clean.shape[1]} tokens"
    )
    print(
        f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, device cpu"
    )

    eap = median_seconds(lambda: attribute(bridge, [batch], metric, "eap"), args.repeats)
    eap_reference = median_seconds(lambda: attribute(bridge, [batch], metric, "eap", engine="reference"), args.repeats)
    eapig = median_seconds(lambda: attribute(bridge, [batch], metric, "eap-ig", steps=5), args.repeats)

    model = ctx.rec.model
    labels = torch.from_numpy(ctx.samples.label[idx[:32]].astype(np.int64))
    targets = torch.tensor([ctx.rec.encoder.no_id, ctx.rec.encoder.yes_id])[labels]
    encoded = ctx.rec.encode(ctx.samples, idx[:32])

    def train_step() -> None:
        model.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(ctx.rec.last_logits(encoded), targets)
        loss.backward()

    model.train()
    train = median_seconds(train_step, args.repeats)
    model.eval()
    model.zero_grad(set_to_none=True)

    def tl_metric(logits: torch.Tensor) -> torch.Tensor:
        return metric(logits).sum()

    config = EdgeAttributionConfig(granularity="edge")
    holder: dict[str, object] = {}
    tl = median_seconds(
        lambda: holder.__setitem__("r", attribution_patch(bridge, batch.clean, batch.corrupt, tl_metric, config)),
        args.tl_repeats,
    )

    ours_denoising = attribute(bridge, [PromptBatch(batch.corrupt, batch.clean, batch.weight)], metric, "eap")
    theirs = tl_dense_scores(holder["r"], shape)
    ours = ours_denoising.scores
    print("cross-check against TransformerLens (same convention, per-edge sums over positions):")
    for label, columns in (
        (
            "into q/k/v",
            [
                shape.head_dst(layer, h, x)
                for layer in range(shape.n_layers)
                for h in range(shape.n_heads)
                for x in "qkv"
            ],
        ),
        ("into MLPs", [shape.mlp_dst(layer) for layer in range(shape.n_layers)]),
        ("into logits", [shape.logits_dst]),
    ):
        mask = shape.real_edge_mask()[:, columns]
        a, b = ours[:, columns][mask], theirs[:, columns][mask]
        print(
            f"  {label:<12} max |ours − TL| {np.abs(a - b).max():.2e} (scores up to "
            f"{np.abs(b).max():.2e}), correlation {np.corrcoef(a, b)[0, 1]:.4f}"
        )

    print(f"our EAP:               {eap * 1000:8.1f} ms")
    print(f"our EAP, reference engine (split q/k/v inputs): {eap_reference * 1000:8.1f} ms")
    print(f"our EAP-IG (5 steps):  {eapig * 1000:8.1f} ms")
    print(f"training step (f+b):   {train * 1000:8.1f} ms")
    print(f"TransformerLens edge attribution_patch: {tl * 1000:8.1f} ms")
    print(f"speedup_vs_transformer_lens={tl / eap:.1f}")
    print(f"eap_over_train_step={eap / train:.2f}")
    print(f"eapig5_over_eap={eapig / eap:.2f}")
    print(f"eap_over_reference_engine={eap / eap_reference:.2f}")


if __name__ == "__main__":
    main()
