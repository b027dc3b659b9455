"""One process against ``torchrun``: ``cure circuit --set both`` and ``cure groups`` on a tiny
item model and synthetic data, the outputs compared number by number (want: within 1e-6).

    python benchmarks/distributed_check.py --nproc 2

On a machine with CUDA the ranks use NCCL, one GPU each (``--nproc`` at most the GPU count;
``--nproc 1`` still runs every collective: gather, broadcast, barrier); without, Gloo on CPU
(``tests/test_distributed.py`` runs that case in CI). ``--too-many`` also starts one process
more than there are GPUs and checks the one-line refusal. Prints one line per check and exits
non-zero when one fails. (A check, not a benchmark: it lives here with ``gpu_check.sh``.)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
RECIPE = '{"n_layer": 2, "n_head": 2, "d_model": 16, "d_mlp": 32, "max_epochs": 1, "train_precision": "fp32"}'
SMALL = ["--prompts", "24", "--eval-prompts", "12", "--batch-size", "5", "--steps", "2"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]


def max_difference(got: Any, want: Any, where: str = "") -> float:
    """The largest |difference| between two JSON values' numbers; a structural difference or an
    unequal string or flag raises."""
    if isinstance(want, dict):
        if not isinstance(got, dict) or got.keys() != want.keys():
            raise AssertionError(f"{where}: keys differ")
        return max((max_difference(got[k], want[k], f"{where}.{k}") for k in want), default=0.0)
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            raise AssertionError(f"{where}: lengths differ")
        return max(
            (max_difference(g, w, f"{where}[{i}]") for i, (g, w) in enumerate(zip(got, want, strict=True))), default=0.0
        )
    if isinstance(want, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
        return 0.0 if math.isnan(want) and math.isnan(got) else abs(got - want)
    if got != want:
        raise AssertionError(f"{where}: {got!r} != {want!r}")
    return 0.0


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600, cwd=REPO)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nproc", type=int, default=2, help="processes torchrun starts (default 2)")
    parser.add_argument(
        "--too-many", action="store_true", help="also check the refusal of one process per GPU too many"
    )
    args = parser.parse_args()

    import torch

    from cure_core.data import make_synthetic
    from cure_core.model.recipe import recipe_from_json
    from cure_core.workspace import Workspace
    from tests.test_data import write_grouplens

    root = Path(tempfile.mkdtemp(prefix="cure-distributed-"))
    env = {
        **os.environ,
        "CURE_CACHE": str(root / "cache"),
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    os.environ["CURE_CACHE"] = env["CURE_CACHE"]
    data = str(write_grouplens(root / "ml", make_synthetic(n_users=40, n_items=30, seed=0)))
    Workspace.open(data=data, recipe=recipe_from_json(RECIPE)).models.original(quiet=True)
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    backend = "nccl" if gpus else "gloo"
    common = ["--data", data, "--recipe-json", RECIPE, *SMALL, "--json"]
    failed = False
    for command in (["circuit", "--set", "both", "--top-n", "12", "--curve-points", "4"], ["groups", "--draws", "2"]):
        start = time.monotonic()
        one = run([sys.executable, "-m", "cure_core.cli", *command, *common], env)
        middle = time.monotonic()
        many = run(
            [*TORCHRUN, "--nproc_per_node", str(args.nproc), "-m", "cure_core.cli", *command, *common, "--force"], env
        )
        end = time.monotonic()
        if one.returncode or many.returncode:
            print(
                f"FAILED {command[0]}: exit {one.returncode} / {many.returncode}\n{one.stderr[-2000:]}\n{many.stderr[-4000:]}"
            )
            failed = True
            continue
        try:
            diff = max_difference(json.loads(many.stdout), json.loads(one.stdout))
        except AssertionError as err:
            print(f"FAILED {command[0]}: outputs differ: {err}")
            failed = True
            continue
        verdict = "ok" if diff <= 1e-6 else "FAILED"
        failed |= verdict != "ok"
        print(
            f"{verdict} {command[0]}: {args.nproc} process(es), {backend}, {gpus} GPU(s): max |difference| {diff:.2e} "
            f"(one process {middle - start:.1f} s, torchrun {end - middle:.1f} s)"
        )
    if args.too_many and gpus:
        refused = run([*TORCHRUN, "--nproc_per_node", str(gpus + 1), "-m", "cure_core.cli", "attribute", *common], env)
        ok = refused.returncode != 0 and f"has {gpus} GPU(s)" in refused.stderr
        failed |= not ok
        line = next((ln for ln in refused.stderr.splitlines() if "GPU(s)" in ln), refused.stderr[-500:])
        print(f"{'ok' if ok else 'FAILED'} {gpus + 1} processes on {gpus} GPU(s) refused: {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
