#!/usr/bin/env bash
# GPU check for CURE Studio: a pytest smoke run and the real-shape attribution and evaluation benchmarks in bf16.
#
# How to run (device tool, one call, from the repository root):
#   1. once, here: echo /.whl/ >> .git/info/exclude, then download the wheels the device image
#      lacks into .whl/ (pip download --no-deps --only-binary=:all: --python-version 3.12
#      --implementation cp --platform manylinux_2_17_x86_64 ... -d .whl NAME==VERSION) for:
#      transformer-lens==4.3.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
#      pydantic==2.14.3 pydantic-core==2.50.4 annotated-types==0.8.0 typing-inspection==0.4.5
#      typing-extensions==4.16.0 typeguard==4.6.1 fancy-einsum==0.0.3 peft==0.21.2 jinja2==3.1.6
#      markupsafe==3.0.4 accelerate==1.15.0  (about 6.5 MiB; torch,
#      transformers and the rest stay the device's own)
#   2. run:   command "bash benchmarks/gpu_check.sh", carry [".whl"], timeout_s 480
#      ("CURE_GPU_BENCH=0 bash benchmarks/gpu_check.sh": the tests only, about 2 minutes;
#      CURE_GPU_TESTS=0 skips the tests; with both, the multi-process check alone, about 1 minute)
# Anywhere else with a GPU and the project's requirements installed: bash benchmarks/gpu_check.sh
# (with no .whl/ folder the install step is skipped). The log goes to $OUT/log when OUT is set.
set -u
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
LOG=/dev/null
if [ -n "${OUT:-}" ]; then mkdir -p "$OUT" && LOG="$OUT/log"; fi

step() { echo; echo "=== $* ($(date +%T))"; }

main() {
step "install carried wheels"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "wheel install FAILED"; return 1; }
    export PYTHONPATH=/tmp/site:$PWD
else
    echo "no .whl/ folder: using the installed packages"
    export PYTHONPATH=$PWD
fi
# datasets is imported by transformer_lens only for type names and loaders; if the device's pyarrow
# is too old for it, fall back to a stub so the check can still run (said loudly in the log).
if ! python3 -c "import datasets" 2>/tmp/datasets_err; then
    echo "WARNING: 'import datasets' failed ($(tail -1 /tmp/datasets_err)); using a stub datasets package"
    mkdir -p /tmp/stub/datasets
    cat > /tmp/stub/datasets/__init__.py <<'EOF'
class Dataset: ...
class IterableDataset: ...
def load_dataset(*args, **kwargs):
    raise RuntimeError("datasets stub (gpu_check.sh): the real package failed to import")
EOF
    printf 'from . import Dataset\n' > /tmp/stub/datasets/arrow_dataset.py
    printf 'from . import IterableDataset\n' > /tmp/stub/datasets/iterable_dataset.py
    printf 'from . import load_dataset\n' > /tmp/stub/datasets/load.py
    export PYTHONPATH=/tmp/stub:$PYTHONPATH
fi

step "machine and versions"
nvidia-smi -L || echo "nvidia-smi failed"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
python3 - <<'EOF' || echo "version check FAILED"
import sys, torch, transformers, huggingface_hub, pydantic, transformer_lens, importlib.metadata as md
print("python", sys.version.split()[0], "| torch", torch.__version__, "| cuda", torch.version.cuda,
      "| transformers", transformers.__version__, "| huggingface_hub", huggingface_hub.__version__,
      "| transformer-lens", md.version("transformer-lens"), "| pydantic", pydantic.__version__)
print("cuda available:", torch.cuda.is_available(), "| devices:", torch.cuda.device_count(),
      "|", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
from transformer_lens.model_bridge import TransformerBridge  # the import the benchmark needs
print("TransformerBridge import ok")
EOF

# (1) first: the tests marked cuda, else a smoke run of two test files on this machine
step "pytest"
if [ "${CURE_GPU_TESTS:-1}" = "0" ]; then
    echo "tests skipped (CURE_GPU_TESTS=0)"
elif grep -rqE "mark\.cuda\b" tests/ 2>/dev/null; then
    # only the files that hold them: other test files import what the device may lack (playwright)
    CURE_CACHE=$(mktemp -d) timeout 150 python3 -m pytest -q -p no:cacheprovider -m cuda $(grep -lE "mark\.cuda\b" tests/*.py) \
        || echo "pytest -m cuda FAILED (rc $?)"
else
    echo "no tests marked cuda: smoke run of tests/test_checkpoints.py tests/test_engine_models.py"
    CURE_CACHE=$(mktemp -d) timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_checkpoints.py tests/test_engine_models.py -x \
        || echo "pytest smoke FAILED or timed out (rc $?)"
fi

# (2) the attribution and evaluation benchmarks at the real shapes (12 layers), bf16 on the GPU
# (CURE_GPU_BENCH=0 skips them)
if [ "${CURE_GPU_BENCH:-1}" = "0" ]; then
    echo "attribution and evaluation benchmarks skipped (CURE_GPU_BENCH=0)"
else
step "attribution_scale.py --device cuda (12 layers)"
if ! timeout 260 python3 benchmarks/attribution_scale.py --device cuda --layers 12; then
    echo "attribution_scale.py FAILED or timed out; one worker run directly, to show its error:"
    timeout 60 python3 benchmarks/attribution_scale.py --worker gpt2 eap --layers 12 --repeats 1 --device cuda 2>&1 | tail -25
fi
# (2b) evaluation throughput at the same shape: Recommender.predict prompts/s beside a training step's samples/s
step "evaluation_scale.py --device cuda --dtype bf16"
timeout 90 python3 benchmarks/evaluation_scale.py --device cuda --dtype bf16 \
    || echo "evaluation_scale.py FAILED or timed out (rc $?)"
fi

# (3) torchrun with NCCL, one process per GPU (at most 2), against one process: cure circuit and
# cure groups equal within 1e-6. One GPU: one NCCL process (every collective still runs) and the
# refusal of a second process on the same GPU.
step "torchrun (NCCL) against one process"
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
if [ "${gpus:-0}" -ge 2 ]; then
    timeout 300 python3 benchmarks/distributed_check.py --nproc 2 || echo "distributed_check FAILED (rc $?)"
else
    timeout 300 python3 benchmarks/distributed_check.py --nproc 1 --too-many || echo "distributed_check FAILED (rc $?)"
fi
step "done"
}

main 2>&1 | tee -a "$LOG"
