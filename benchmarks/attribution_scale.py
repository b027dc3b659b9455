"""Attribution at real-model shapes (random weights): EAP, EAP-IG(5) and a training step.

Two models: GPT-2-small-shaped (12 layers, 12 heads, d_model 768, d_mlp 3072) and Llama-shaped
with grouped-query attention (12 layers, 12 query heads sharing 4 key/value heads, d_model 768,
SwiGLU d_mlp 2048), both with a small vocabulary (the unembedding is not what is measured).
One batch of 8 prompts × 128 tokens, the metric read at the last position. For each model it
times, as the median of ``--repeats`` runs after a cold one:

- our EAP and EAP-IG (5 steps) through the TransformerBridge (``analysis.attribution``, default
  projected engine); EAP-IG under both pass plans: ``stepwise`` (one IG step per pass, 5 passes)
  and ``stacked`` (the 5 steps side by side in one pass), each forced by a ``max_memory``
  budget of its predicted working set;
- one full training step of the same batch on the Hugging Face model: forward, backward of the
  answer cross-entropy at the last position, AdamW step;

and the peak memory of each above the loaded model, in its cold run, two ways
(``memory_meters``): on CPU the peak resident set size sampled every 2 ms, and the peak of live
tensor storages (on CUDA both are ``torch.cuda.max_memory_allocated``). The training step's peak
includes the AdamW state it allocates. Each measurement runs in a fresh process, so one run's
freed-but-kept heap cannot hide the next one's peak. Besides wall-clock time it reports the
process's CPU time, which other programs on a shared machine disturb less. The attribution
peaks are set beside the prediction of ``analysis.memory.attribution_peak_bytes``, which
predicts tensor memory, and the prediction for LLaMA-7B at 8 × 300 tokens in bf16 is printed.

    .venv/bin/python benchmarks/attribution_scale.py [--layers 12] [--repeats 3] [--models gpt2,llama]
    .venv/bin/python benchmarks/attribution_scale.py --device cuda   # bf16 on a GPU

Ends with ``eap_over_train_step=``, ``eapig5_over_eap=`` (of CPU time on a CPU, of wall-clock
time on a GPU; EAP-IG with the plan that
``attribute`` runs by default on this device), ``peak_memory_over_train_step=`` (the larger of
EAP's and that plan's peak), each the
worst of the models, and ``memory_estimate_worst_error=`` (the largest |predicted / measured − 1|
over the attribution measures' tensor peaks). Targets: EAP ≤ 1.5× a training step, EAP-IG(5) ≤ 4× EAP, peak memory
≤ 1.5× a training step's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from memory_meters import PeakRss, TensorPeak

MEASURES = ("eap", "eap-ig5-stepwise", "eap-ig5-stacked", "train-step")
#: IG steps per pass of each EAP-IG plan.
PLANS = {"eap-ig5-stepwise": 1, "eap-ig5-stacked": 5}
BATCH, TOKENS, VOCAB = 8, 128, 1024


def build(arch: str, layers: int, device: str) -> tuple[torch.nn.Module, object]:
    """The random-weight model (eval mode, seeded) and a TransformerBridge around it."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(0)
    if arch == "gpt2":
        model = GPT2LMHeadModel(
            GPT2Config(
                vocab_size=VOCAB,
                n_positions=TOKENS,
                n_embd=768,
                n_layer=layers,
                n_head=12,
                resid_pdrop=0,
                embd_pdrop=0,
                attn_pdrop=0,
            )
        )
    else:
        config = LlamaConfig(
            vocab_size=VOCAB,
            hidden_size=768,
            intermediate_size=2048,
            num_hidden_layers=layers,
            num_attention_heads=12,
            num_key_value_heads=4,
            max_position_embeddings=TOKENS,
        )
        model = LlamaForCausalLM(config)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = model.to(device=device, dtype=dtype).eval()
    tokenizer = _tokenizer(PreTrainedTokenizerFast)
    bridge = TransformerBridge.boot_transformers(arch, hf_model=model, tokenizer=tokenizer)
    bridge.eval()
    return model, bridge


def _tokenizer(cls: type) -> object:
    """A word-level tokenizer of VOCAB tokens, saved and reloaded (the bridge wants a named one)."""
    from tokenizers import Tokenizer, models

    vocab = {f"t{i}": i for i in range(VOCAB)}
    folder = Path(tempfile.mkdtemp())
    cls(
        tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="t0")),
        unk_token="t0",
        pad_token="t1",
        bos_token="t2",
        eos_token="t3",
    ).save_pretrained(folder)
    return cls.from_pretrained(folder)


def batch(device: str):
    from analysis.prompts import PromptBatch

    g = torch.Generator().manual_seed(1)
    clean = torch.randint(4, VOCAB, (BATCH, TOKENS), generator=g)
    corrupt = clean.clone()
    corrupt[:, 10:40] = torch.randint(4, VOCAB, (BATCH, 30), generator=g)  # a swapped history
    return PromptBatch(clean, corrupt, torch.ones(BATCH)).to(device)


def operation(measure: str, model: torch.nn.Module, bridge: object, device: str) -> Callable[[], None]:
    from analysis.attribution import attribute
    from analysis.hooks import graph_shape
    from analysis.memory import working_set_bytes
    from analysis.prompts import LogitDiff

    prompts = batch(device)
    metric = LogitDiff(5, 6)
    if measure == "eap":
        return lambda: attribute(bridge, [prompts], metric, "eap")
    if measure in PLANS:
        budget = working_set_bytes(bridge, graph_shape(bridge), BATCH, TOKENS, copies=PLANS[measure])
        return lambda: attribute(bridge, [prompts], metric, "eap-ig", steps=5, max_memory=budget)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    targets = torch.randint(5, 7, (BATCH,), device=device)

    def train_step() -> None:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        logits = model(prompts.clean).logits[:, -1]
        torch.nn.functional.cross_entropy(logits.float(), targets).backward()
        optimizer.step()
        model.eval()

    return train_step


def worker(arch: str, measure: str, layers: int, repeats: int, device: str) -> dict[str, float]:
    """One measurement in this process: the cold run's peak memory, then the median time."""
    model, bridge = build(arch, layers, device)
    run = operation(measure, model, bridge, device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        run()
        sync()
        peak = torch.cuda.max_memory_allocated() - base
        tensor_peak = peak
    else:
        with PeakRss() as rss, TensorPeak() as tensors:
            run()
        peak, tensor_peak = rss.bytes, tensors.peak
    times, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        run()
        sync()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return {
        "seconds": statistics.median(times),
        "cpu_seconds": statistics.median(cpu),
        "peak_bytes": peak,
        "tensor_peak_bytes": tensor_peak,
        "predicted_bytes": predicted_peak(measure, bridge),
        "default_plan": default_plan(bridge),
    }


def predicted_peak(measure: str, bridge: object) -> int:
    """``analysis.memory``'s prediction for an attribution measure (0 for the training step)."""
    from analysis.hooks import graph_shape
    from analysis.memory import ModelSize, attribution_peak_bytes

    copies = {"eap": 1, **PLANS}.get(measure)
    if copies is None:
        return 0
    return attribution_peak_bytes(ModelSize.of_bridge(bridge, graph_shape(bridge)), BATCH, TOKENS, copies)


def default_plan(bridge: object) -> str:
    """The EAP-IG plan (a measure of :data:`PLANS`) that ``attribute`` runs without a budget on this device."""
    from analysis.hooks import graph_shape
    from analysis.memory import plan_passes

    device = str(next(bridge.parameters()).device)  # type: ignore[attr-defined]
    copies = plan_passes(bridge, graph_shape(bridge), batch(device), 5, None)[1]
    plans = [measure for measure, per_pass in PLANS.items() if per_pass == copies]
    if not plans:
        raise SystemExit(f"the default plan runs {copies} IG steps a pass at this shape; this benchmark times 1 and 5")
    return plans[0]


def llama_7b_line() -> str:
    from transformers import LlamaConfig

    from analysis.memory import GIB, ModelSize, attribution_peak_bytes

    config = LlamaConfig(
        hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32
    )
    size = ModelSize.of_hf_config(config, torch.bfloat16)
    d, weights = config.hidden_size, config.vocab_size * config.hidden_size * 2
    weights += config.num_hidden_layers * (4 * d * d + 3 * d * config.intermediate_size)
    one = attribution_peak_bytes(size, 8, 300, 1) / GIB
    reference = attribution_peak_bytes(size, 8, 300, 1, engine="reference") / GIB
    return (
        f"LLaMA-7B, 8 × 300 tokens, bf16: predicted attribution peak {one:.1f} GiB above the "
        f"{weights * 2 / GIB:.1f} GiB of weights "
        f"(EAP, or EAP-IG one step per pass); the reference engine {reference:.1f} GiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=12, help="layers of both models (12 = the real shapes)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after the cold one (median)")
    parser.add_argument("--models", default="gpt2,llama", help="comma-separated: gpt2, llama")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--worker", nargs=2, metavar=("ARCH", "MEASURE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, args.layers, args.repeats, args.device)))
        return

    print(
        f"batch {BATCH} × {TOKENS} tokens, {args.layers} layers, device {args.device} "
        f"({'bf16' if args.device == 'cuda' else 'fp32'}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    # On a CPU the time ratios are of process CPU time, which other programs on the machine disturb
    # less than wall-clock time; on a GPU of wall-clock time (synchronised). Both are printed.
    clock, clock_name = ("cpu_seconds", "CPU time") if args.device == "cpu" else ("seconds", "wall-clock time")
    errors: list[float] = []
    ratios: dict[str, list[float]] = {
        "eap_over_train_step": [],
        "eapig5_over_eap": [],
        "peak_memory_over_train_step": [],
    }
    for arch in args.models.split(","):
        results = {}
        for measure in MEASURES:
            command = [
                sys.executable,
                __file__,
                "--worker",
                arch,
                measure,
                "--layers",
                str(args.layers),
                "--repeats",
                str(args.repeats),
                "--device",
                args.device,
            ]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            results[measure] = json.loads(output.strip().splitlines()[-1])
        label = {"gpt2": "GPT-2-small shape", "llama": "Llama shape, GQA 12q/4kv"}[arch]
        print(f"{label}:")
        for measure in MEASURES:
            r = results[measure]
            line = (
                f"  {measure:<17} {r['seconds'] * 1000:9.0f} ms (CPU {r['cpu_seconds'] * 1000:9.0f} ms)   "
                f"peak {r['peak_bytes'] / 2**20:6.0f} MiB, tensors {r['tensor_peak_bytes'] / 2**20:6.0f} MiB"
            )
            if r["predicted_bytes"]:
                ratio = r["predicted_bytes"] / max(r["tensor_peak_bytes"], 1)
                errors.append(abs(ratio - 1))
                line += f", predicted {r['predicted_bytes'] / 2**20:6.0f} MiB ({ratio:.2f}× tensors)"
            print(line)
        train, eap = results["train-step"], results["eap"]
        plan = eap["default_plan"]
        ig = results[plan]
        ratios["eap_over_train_step"].append(eap[clock] / train[clock])
        ratios["eapig5_over_eap"].append(ig[clock] / eap[clock])
        ratios["peak_memory_over_train_step"].append(
            max(eap["peak_bytes"], ig["peak_bytes"]) / max(train["peak_bytes"], 1)
        )
        print(
            f"  by {clock_name}: EAP / step {ratios['eap_over_train_step'][-1]:.2f}, EAP-IG(5) ({plan}, the default "
            f"here) / EAP "
            f"{ratios['eapig5_over_eap'][-1]:.2f}, peak (EAP, EAP-IG) / step "
            f"{ratios['peak_memory_over_train_step'][-1]:.2f} (tensors "
            f"{max(eap['tensor_peak_bytes'], ig['tensor_peak_bytes']) / max(train['tensor_peak_bytes'], 1):.2f}); "
            f"by wall-clock time EAP / step {eap['seconds'] / train['seconds']:.2f}, EAP-IG(5) / EAP "
            f"{ig['seconds'] / eap['seconds']:.2f}"
        )
    print(llama_7b_line())
    for name, values in ratios.items():
        print(f"{name}={max(values):.2f}")
    print(f"memory_estimate_worst_error={max(errors):.2f}")


if __name__ == "__main__":
    main()
