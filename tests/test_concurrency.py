"""Several users at once: hooked runs on one shared model take turns, and one cache entry is
built once across threads and processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from tolerances import assert_close

from analysis.circuit import select
from cure_core.ablation import ablation_table
from cure_core.circuits import AttributionSettings, circuit_context, get_attribution, measure_circuits
from cure_core.model.repository import ModelRepository
from cure_core.workspace import Workspace
from tests.tiny_recipes import TINY_RECIPE

SETTINGS = [
    AttributionSettings(method="eap", n_prompts=48, n_eval=32, batch_size=16),
    AttributionSettings(method="eap-ig", steps=4, corruption="target", n_prompts=48, n_eval=32, batch_size=8),
]


@pytest.fixture(scope="module")
def ctx(synthetic, tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CURE_CACHE", str(tmp_path_factory.mktemp("concurrency-cache")))
        ws = Workspace.open(dataset=synthetic, recipe=TINY_RECIPE)
        return circuit_context(ws, ws.data.default_request(), device="cpu")


def side_by_side(*calls):
    """Run the calls in threads that start together; their results in order."""
    start = threading.Barrier(len(calls))

    def run(call):
        start.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return [f.result() for f in [pool.submit(run, call) for call in calls]]


def test_two_attributions_on_one_bridge_from_two_threads_equal_their_sequential_results(ctx):
    alone = [get_attribution(ctx, "forget", s, force=True, quiet=True) for s in SETTINGS]
    for _ in range(2):
        together = side_by_side(
            *[lambda s=s: get_attribution(ctx, "forget", s, force=True, quiet=True) for s in SETTINGS]
        )
        for a, b in zip(together, alone, strict=True):
            assert_close(a.scores, b.scores, rel=1e-6)
            assert_close(a.metric_clean, b.metric_clean, rel=1e-6)


def test_evaluation_and_ablation_beside_an_attribution_equal_their_sequential_results(ctx):
    idx = ctx.sets.test[:200]
    scores_alone = ctx.rec.predict(ctx.samples, idx).margin
    ablation_alone = ablation_table(ctx, ["m0"], "zero", n_probe=64)
    attribution, scores, ablation = side_by_side(
        lambda: get_attribution(ctx, "retain", SETTINGS[1], force=True, quiet=True),
        lambda: ctx.rec.predict(ctx.samples, idx).margin,
        lambda: ablation_table(ctx, ["m0"], "zero", n_probe=64),
    )
    assert attribution.scores.shape == get_attribution(ctx, "retain", SETTINGS[1], quiet=True).scores.shape
    assert_close(scores, scores_alone, rel=1e-6)
    assert_close(ablation.select_dtypes("number").to_numpy(), ablation_alone.select_dtypes("number").to_numpy(), 1e-6)


def test_faithfulness_beside_an_attribution_equals_its_sequential_result(ctx):
    attribution = get_attribution(ctx, "forget", SETTINGS[0], quiet=True)
    circuits = [select(attribution.shape, attribution.scores, "top-n", n) for n in (5, 20)]

    def measure():
        return [f.metric_circuit for f in measure_circuits(ctx, "forget", SETTINGS[0], circuits, quiet=True)]

    alone = measure()
    together, _ = side_by_side(measure, lambda: get_attribution(ctx, "retain", SETTINGS[0], force=True, quiet=True))
    assert_close(together, alone, rel=1e-6)


def test_two_threads_training_one_model_train_it_once(synthetic, monkeypatch):
    ws = Workspace.open(dataset=synthetic, recipe=TINY_RECIPE)
    trained = []
    train = ModelRepository._train

    def counting(self, *args, **kwargs):
        trained.append(threading.get_ident())
        return train(self, *args, **kwargs)

    monkeypatch.setattr(ModelRepository, "_train", counting)
    first, second = side_by_side(
        lambda: ws.models.train_model("original", quiet=True), lambda: ws.models.train_model("original", quiet=True)
    )
    assert len(trained) == 1 and first.path == second.path


BUILDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from cure_core.cache import entry_lock

    entry = Path(sys.argv[1])
    with entry_lock(entry):
        if entry.exists():
            print("reused")
        else:
            time.sleep(1.0)
            entry.mkdir()
            print("built")
    """
)


def test_two_processes_build_one_cache_entry_once(tmp_path):
    entry = tmp_path / "model-abc"
    procs = [
        subprocess.Popen([sys.executable, "-c", BUILDER, str(entry)], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = sorted(p.communicate(timeout=120)[0].strip() for p in procs)
    assert [p.returncode for p in procs] == [0, 0]
    assert outputs == ["built", "reused"]
    assert np.array_equal(sorted(p.name for p in tmp_path.iterdir()), [".model-abc.lock", "model-abc"])
