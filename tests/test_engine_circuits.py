"""Both attribution engines through the circuit pipeline of a user's checkpoint (tiny Qwen2, GQA,
with a LoRA adapter): the same scores, the same selected circuit and the same faithfulness."""

from __future__ import annotations

import numpy as np
import pytest
from tolerances import assert_close

from analysis.attribution import Attribution
from analysis.distributed import attribute_sharded
from cure_core.circuits import AttributionSettings, CircuitContext, answer_metric, circuit_context, find_circuit
from cure_core.model_source import ModelSource
from cure_core.workspace import Workspace

SETTINGS = AttributionSettings(n_prompts=16, n_eval=16, batch_size=8)
TOP = 100


@pytest.fixture(scope="module")
def ctx(synthetic, user_checkpoints) -> CircuitContext:
    model, adapter = user_checkpoints["qwen2"]
    ws = Workspace.open(dataset=synthetic, source=ModelSource(model=str(model), adapter=str(adapter)))
    return circuit_context(ws, ws.data.default_request(), device="cpu")


def _attribution(ctx: CircuitContext, engine: str) -> Attribution:
    batches = ctx.batches("forget", SETTINGS, "attribution")
    return attribute_sharded(
        ctx.bridge, batches, answer_metric(ctx.rec), SETTINGS.method, SETTINGS.steps, engine=engine
    )  # type: ignore[arg-type]


def _top(attribution: Attribution) -> set[int]:
    return set(np.argsort(-np.abs(attribution.scores), axis=None, kind="stable")[:TOP].tolist())


def test_both_engines_select_the_same_circuit_with_the_same_faithfulness(ctx):
    projected, reference = _attribution(ctx, "projected"), _attribution(ctx, "reference")
    assert_close(projected.scores, reference.scores, rel=1e-5)
    # The top edges may trade places only where their scores tie within the engines' float difference.
    magnitude = np.abs(reference.scores)
    cutoff = np.sort(magnitude, axis=None)[-TOP]
    tops = _top(projected), _top(reference)
    for flat in tops[0] ^ tops[1]:
        assert abs(magnitude.flat[flat] - cutoff) <= 1e-5 * magnitude.max(), "a top edge that is no tie"
    if tops[0] == tops[1]:
        found = [
            find_circuit(ctx, attribution, "forget", SETTINGS, "top-n", TOP, curve_points=0, quiet=True)
            for attribution in (projected, reference)
        ]
        assert np.array_equal(found[0].circuit.edges, found[1].circuit.edges)
        assert found[0].faithfulness.value == found[1].faithfulness.value, "the same circuit on the same prompts"
