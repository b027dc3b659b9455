"""A user's checkpoint as the workspace's model: loading through a profile, Retrain given or
not, the evaluation without Retrain, the bridge on the same weights, the cache key, the CLI."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from tolerances import assert_close

from cure_core.cli import main
from cure_core.environment import read_environment
from cure_core.errors import CureError
from cure_core.evaluate import compare_to_retrain
from cure_core.metrics import jsd
from cure_core.model.checkpoint_model import fingerprint
from cure_core.model_source import ENVIRONMENT, MissingRetrainError, ModelSource
from cure_core.requests import user_request
from cure_core.workspace import Workspace
from tests.test_checkpoints import _digests


@pytest.fixture
def qwen2(user_checkpoints):
    return user_checkpoints["qwen2"]


def _ws(synthetic, **source) -> Workspace:
    return Workspace.open(dataset=synthetic, source=ModelSource(**source))


def test_source_checks_its_fields(qwen2, tmp_path):
    folder, adapter = (str(p) for p in qwen2)
    with pytest.raises(ValueError, match=r"--adapter \(CURE_ADAPTER\) applies to a user's checkpoint"):
        ModelSource(adapter=adapter)
    with pytest.raises(ValueError, match="no folder at"):
        ModelSource(model=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="dtype"):
        ModelSource(model=folder, dtype="fp16")
    source = ModelSource(model=folder, adapter=adapter, profile="compact", dtype="bf16")
    assert read_environment(source.environment()).source == source
    assert set(source.environment()) <= set(ENVIRONMENT.values())
    assert read_environment({}).source == ModelSource()


def test_user_model_loads_through_the_profile(synthetic, qwen2):
    ws = _ws(synthetic, model=str(qwen2[0]), adapter=str(qwen2[1]), profile="tallrec", device="cpu")
    rec = ws.models.original()
    assert rec.checkpoint is not None and rec.known_users is None and ws.models.original() is rec  # loaded once
    assert rec.card.checkpoint.n_kv_heads == 2 and rec.card.profile == "tallrec"
    idx = np.arange(12)
    preds = rec.predict(ws.data.samples, idx)
    batch = rec.encode(ws.data.samples, idx)
    with torch.no_grad():
        mask = batch.attention_mask
        logits = rec.model(batch.input_ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits
    reference = (logits[:, -1, rec.encoder.yes_id] - logits[:, -1, rec.encoder.no_id]).numpy()
    assert_close(preds.margin, reference)
    assert np.isfinite(preds.logp_yes).all() and (preds.logp_yes <= 0).all()


def test_the_bridge_runs_the_same_weights(synthetic, qwen2):
    ws = _ws(synthetic, model=str(qwen2[0]), adapter=str(qwen2[1]), device="cpu")
    rec = ws.models.original()
    idx = np.arange(8)
    before = rec.predict(ws.data.samples, idx).margin
    bridge = rec.bridge()
    assert rec.bridge() is bridge
    assert_close(rec.predict(ws.data.samples, idx).margin, before)
    batch = rec.encode(ws.data.samples, idx)
    with torch.no_grad():
        logits = bridge(batch.input_ids, return_type="logits", attention_mask=batch.attention_mask)[:, -1]
    np.testing.assert_allclose(
        (logits[:, rec.encoder.yes_id] - logits[:, rec.encoder.no_id]).numpy(), before, atol=1e-4
    )


def test_without_retrain_the_reference_metrics_are_unavailable(synthetic, qwen2):
    ws = _ws(synthetic, model=str(qwen2[0]), profile="compact", device="cpu")
    request = user_request(ws.data.dataset, ws.data.samples, fraction=0.1, seed=0)
    original, retrain = ws.models.reference_models(request)
    assert retrain is None and ws.models.load_model("retrain", request) is None
    with pytest.raises(MissingRetrainError, match="--retrain-model"):
        ws.models.ensure_models(request)
    with pytest.raises(CureError, match="trained here only for the models of a recipe"):
        ws.models.train_model("original")
    report = compare_to_retrain(original, None, request, ws.data.samples, ws.data.sets(request), name="original")
    assert report.retrain is None and report.jsd_to_retrain is None and report.retrain_unavailable
    assert report.test_auc is not None and report.mia_auc is not None  # the model's own metrics stay
    assert report.forget_auc_gap is None and report.privleak == {}
    assert all(ref is None for _, _, ref in report.versus(["test AUC", "forget AUC"]))


def test_retrain_as_another_adapter_on_the_same_base(synthetic, qwen2, monkeypatch):
    monkeypatch.setattr("cure_core.evaluate.TEXT_EVAL_PROMPTS", 7)
    ws = _ws(synthetic, model=str(qwen2[0]), retrain_adapter=str(qwen2[1]), profile="compact", device="cpu")
    request = user_request(ws.data.dataset, ws.data.samples, fraction=0.1, seed=0)
    original, retrain = ws.models.ensure_models(request)
    assert retrain is not original
    assert retrain.card.checkpoint.adapter is not None and original.card.checkpoint.adapter is None
    assert retrain.card.fingerprint != original.card.fingerprint
    sets = ws.data.sets(request)
    report = compare_to_retrain(original, retrain, request, ws.data.samples, sets)
    assert report.jsd_to_retrain is not None and report.jsd_to_retrain >= 0
    # a text model scores seeded draws of at most 7 prompts per set, the forget set whole
    assert report.evaluated == {
        "test": min(7, len(sets.test)),
        "forget": len(sets.forget),
        "holdout": min(7, len(sets.holdout)),
        "retain": min(7, len(sets.retain)),
    }
    forget = sets.forget
    expected = jsd(original.predict(ws.data.samples, forget), retrain.predict(ws.data.samples, forget))
    assert report.jsd_to_retrain == pytest.approx(expected, abs=1e-7)


def test_fingerprint_follows_weights_dtype_and_profile(qwen2, tmp_path):
    folder, adapter = (str(p) for p in qwen2)
    base = fingerprint(folder, None, "fp32", "profile")
    assert base == fingerprint(folder, None, "fp32", "profile")
    assert (
        len({base, fingerprint(folder, adapter, "fp32", "profile"), fingerprint(folder, None, "bf16", "profile")}) == 3
    )
    assert fingerprint(folder, None, "fp32", "other profile") != base
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    assert fingerprint(str(copy), None, "fp32", "profile") == base  # the same files elsewhere: the same key
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one byte of the last block
    weights.write_bytes(bytes(data))
    assert fingerprint(str(copy), None, "fp32", "profile") != base


def test_cli_evaluate_and_forget_on_a_user_model(synthetic, qwen2, tmp_path, capsys):
    from tests.test_data import write_grouplens

    data = write_grouplens(tmp_path / "ml", synthetic)
    before = _digests(*qwen2)
    flags = ["--data", str(data), "--model", str(qwen2[0]), "--adapter", str(qwen2[1]), "--profile", "compact"]
    assert main(["forget", "--users", "10%", *flags]) == 0
    out = capsys.readouterr().out
    assert "LoRA rank" in out and "first forget prompt" in out and "? Answer:" in out
    assert main(["evaluate", *flags]) == 0
    out = capsys.readouterr().out
    assert "Retrain: unavailable" in out and "test AUC" in out
    assert main(["evaluate", "--json", *flags]) == 0
    assert '"retrain_unavailable"' in capsys.readouterr().out
    assert main(["evaluate", "--which", "retrain", *flags]) == 2
    assert "no Retrain was given" in capsys.readouterr().err
    assert main(["study", "pareto", *flags]) == 2
    assert "not available yet" in capsys.readouterr().err
    assert _digests(*qwen2) == before
