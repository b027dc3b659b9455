"""Attribution, faithfulness and module groups over several processes equal one process.

Units (no processes): every way of dealing batches to ranks, gathered back in batch order,
assembles exactly the one-process result. End to end: ``torchrun --nproc_per_node 2`` (Gloo on
CPU) runs ``cure circuit``, ``cure groups`` and ``cure attribute`` on a tiny item model and
synthetic data; their output and the attributions rank 0 caches equal an in-process run's
within 1e-6. Plus the one-line errors of ``--max-memory`` and of commands that do not run
under torchrun.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_attribution import METRIC, _batches, _save_tiny
from tolerances import assert_close as assert_arrays_close

from analysis.attribution import assemble, attribute, score_batches
from analysis.circuit import Circuit, select
from analysis.distributed import attribute_sharded, faithfulness_sharded, shard, unshard, world
from analysis.faithfulness import combine, faithfulness_curve, measure_batches
from analysis.hooks import graph_shape
from cure_core import cli
from cure_core.checkpoints.bridge import load_bridge
from cure_core.cli.options import memory_size
from cure_core.data import make_synthetic
from cure_core.model.recipe import recipe_from_json
from cure_core.workspace import Workspace
from tests.test_data import write_grouplens

REPO = Path(__file__).resolve().parent.parent
RECIPE = (
    '{"n_layer": 2, "n_head": 2, "d_model": 16, "d_mlp": 32, "max_epochs": 1, "batch_size": 64, '
    '"train_precision": "fp32"}'
)
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone"]
# 24 attribution prompts in batches of 5: 5 batches, the last one short, dealt 3 + 2 to two ranks
SMALL = ["--prompts", "24", "--eval-prompts", "12", "--batch-size", "5", "--steps", "2"]


# --- units -------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_batches", [0, 1, 4, 7])
@pytest.mark.parametrize("size", [1, 2, 3, 8])
def test_shards_cover_every_batch_once_and_unshard_restores_the_order(n_batches, size):
    shards = [shard(n_batches, rank, size) for rank in range(size)]
    assert sorted(i for s in shards for i in s) == list(range(n_batches))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1 and len(shards[0]) == max(map(len, shards))
    assert unshard(shards, n_batches) == list(range(n_batches))


def test_unshard_refuses_a_rank_with_the_wrong_number_of_results():
    with pytest.raises(ValueError, match="rank 1 returned"):
        unshard([[0, 2], [1, 3]], 3)


@pytest.fixture(scope="module")
def bridge(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpt2-distributed")
    _save_tiny(folder, "gpt2")
    return load_bridge(folder)


def test_ranks_gathered_in_batch_order_assemble_the_one_process_attribution(bridge):
    """Each simulated rank scores its shard alone; the gathered parts give the one-process
    attribution bit for bit (same per-batch sums, added in the same order), a rank with no
    batch included."""
    batches = _batches(n=17)  # 4 batches: 5, 5, 5, 2 prompts
    whole = attribute(bridge, batches, METRIC, "eap-ig", steps=2)
    assert world() == (0, 1)
    alone = attribute_sharded(bridge, batches, METRIC, "eap-ig", steps=2)
    np.testing.assert_array_equal(alone.scores, whole.scores)
    for size in (2, 3, 5):
        per_rank = [
            score_batches(bridge, [batches[i] for i in shard(len(batches), rank, size)], METRIC, 2)
            for rank in range(size)
        ]
        got = assemble(graph_shape(bridge), "eap-ig", 2, unshard(per_rank, len(batches)))
        for field in ("scores", "batch_scores", "metric_clean", "metric_corrupt"):
            np.testing.assert_array_equal(getattr(got, field), getattr(whole, field), err_msg=f"{field}, {size} ranks")


def test_ranks_gathered_in_batch_order_give_the_one_process_faithfulness(bridge):
    batches = _batches(n=17)
    shape = graph_shape(bridge)
    scores = attribute(bridge, batches, METRIC, "eap").scores
    circuits = [Circuit.full(shape), Circuit.empty(shape), select(shape, scores, "top-n", 10)]
    whole = faithfulness_curve(bridge, batches, METRIC, circuits)
    assert faithfulness_sharded(bridge, batches, METRIC, circuits) == whole
    for size in (2, 5):
        per_rank = [
            measure_batches(bridge, [batches[i] for i in shard(len(batches), rank, size)], METRIC, circuits)
            for rank in range(size)
        ]
        assert combine(circuits, unshard(per_rank, len(batches))) == whole


@pytest.mark.parametrize(
    ("raw", "size"),
    [("8000000000", 8 * 10**9), ("8GB", 8 * 10**9), ("8GiB", 8 * 2**30), ("1.5 gib", 3 * 2**29), ("512MiB", 2**29)],
)
def test_memory_sizes(raw, size):
    assert memory_size(raw) == size


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["attribute", "--max-memory", "lots"], "is not a size"),
        (["circuit", "--max-memory", "8 parsecs"], "is not a size"),
        (["groups", "--max-memory", "0"], "less than one byte"),
        (["attribute", "--max-memory", "-1GiB"], "--max-memory"),
    ],
)
def test_bad_max_memory_is_one_line(capsys, argv, message):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err and "fix:" in err, err


def test_commands_that_do_not_run_across_processes_say_so(capsys, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    for argv in (["evaluate"], ["compare"], ["train"]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"rank 1: error: `cure {argv[0]}` does not run across processes") and "fix:" in err, err


# --- two processes -----------------------------------------------------------------------------


def one_process(cache: Path, *argv: str) -> Any:
    """The JSON output of ``cure *argv`` run here."""
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out):
        patch.setenv("CURE_CACHE", str(cache))
        assert cli.main([*argv, "--json"]) == 0
    return json.loads(out.getvalue())


def two_processes(cache: Path, *argv: str) -> Any:
    """The JSON output of ``torchrun --nproc_per_node 2 -m cure_core.cli *argv`` (rank 0 prints)."""
    env = {
        **os.environ,
        "CURE_CACHE": str(cache),
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",  # Gloo on CPU, even on a machine with GPUs
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    run = subprocess.run(
        [*TORCHRUN, "-m", "cure_core.cli", *argv, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout)


def assert_close(got: Any, want: Any, where: str = "") -> None:
    """Equal JSON, numbers within 1e-5 relative (another process may sum in another order)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), where
        for key in want:
            assert_close(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_close(g, w, f"{where}[{i}]")
    elif isinstance(want, float) and not isinstance(want, bool):
        assert got == pytest.approx(want, rel=1e-5, abs=1e-7, nan_ok=True), where
    else:
        assert got == want, where


def attributions(cache: Path) -> dict[str, dict[str, np.ndarray]]:
    """Every cached attribution's arrays, by file name."""
    out = {}
    for path in sorted((cache / "attributions").rglob("*.npz")):
        with np.load(path) as data:
            out[path.name] = {k: data[k] for k in ("scores", "batch_scores", "metric_clean", "metric_corrupt")}
    return out


def assert_same_attributions(got: dict, want: dict, names: list[str]) -> None:
    for name in names:
        for field, value in want[name].items():
            assert_arrays_close(got[name][field], value, err_msg=f"{name} {field}")


@dataclass
class Reference:
    """The one-process outputs (JSON) and cached attributions (arrays, by file name) of the
    three commands on the tiny model, trained once."""

    data: str
    cache: Path
    outputs: dict[str, Any]
    attributions: dict[str, dict[str, np.ndarray]]

    def args(self, command: str) -> list[str]:
        return [*COMMANDS[command], "--data", self.data, "--recipe-json", RECIPE, *SMALL]


COMMANDS = {
    "circuit": ["circuit", "--set", "both", "--top-n", "12", "--curve-points", "4"],
    "groups": ["groups", "--draws", "2"],
    "attribute": ["attribute", "--set", "retain", "--top", "1000"],
}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Reference:
    """Synthetic GroupLens files, the tiny model trained once in one process (so that the one-
    and two-process runs read the same cached model), and the one-process results."""
    root = tmp_path_factory.mktemp("distributed")
    data = str(write_grouplens(root / "ml", make_synthetic(n_users=40, n_items=30, seed=0)))
    cache = root / "cache"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CURE_CACHE", str(cache))
        Workspace.open(data=data, recipe=recipe_from_json(RECIPE)).models.original(quiet=True)
    ref = Reference(data, cache, {}, {})
    for command in COMMANDS:  # circuit writes forget, retain, control-0; groups adds control-1
        ref.outputs[command] = one_process(cache, *ref.args(command))
    ref.attributions = attributions(cache)
    assert len(ref.attributions) == 4 and {n.split("-")[0] for n in ref.attributions} == {"forget", "retain", "control"}
    return ref


def test_circuit_over_two_processes_equals_one(reference):
    """forget, retain and control-0 attributed, and every circuit's faithfulness measured, by
    two processes."""
    assert_close(two_processes(reference.cache, *reference.args("circuit"), "--force"), reference.outputs["circuit"])
    got = attributions(reference.cache)
    assert got.keys() == reference.attributions.keys()
    assert_same_attributions(got, reference.attributions, sorted(got))


def test_groups_over_two_processes_equal_one(reference):
    """control-1 attributed by two processes; the other sets read from the cache by rank 0
    and handed to the other."""
    control_1 = next(n for n in reference.attributions if n.startswith("control-1-"))
    next((reference.cache / "attributions").rglob(control_1)).unlink()
    assert_close(two_processes(reference.cache, *reference.args("groups")), reference.outputs["groups"])
    assert_same_attributions(attributions(reference.cache), reference.attributions, [control_1])


def test_attribute_over_two_processes_under_a_memory_bound_equals_one(reference):
    """A bound of one byte: one prompt and one IG step per pass, the same scores."""
    argv = [*reference.args("attribute"), "--force", "--max-memory", "1"]
    assert_close(two_processes(reference.cache, *argv), reference.outputs["attribute"])
    retain = [n for n in reference.attributions if n.startswith("retain-")]
    assert_same_attributions(attributions(reference.cache), reference.attributions, retain)


def test_unlearn_with_a_hand_set_world_but_no_launcher_is_one_line(capsys, monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    assert cli.main(["unlearn", "--method", "npo"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot join the process group" in err and "Traceback" not in err, err
