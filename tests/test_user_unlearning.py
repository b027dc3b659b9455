"""``cure unlearn`` and ``cure compare`` on a user's checkpoint (text mode), with and without a
Retrain: the run is saved as a Hugging Face folder in the cache, reads back as ``--model``, and
nothing is ever written into the user's own folders."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import zipfile
from types import SimpleNamespace

import numpy as np
import pytest

from cure_core.cli import main
from cure_core.evaluate import TEXT_EVAL_PROMPTS
from cure_core.metrics import utility
from cure_core.model.backends.item import ITEM_CAPABILITIES
from cure_core.model.backends.text import TEXT_CAPABILITIES
from cure_core.model.card import ModelCard, read_card
from cure_core.model_source import ModelSource
from cure_core.requests import load_request
from cure_core.unlearning.run_store import checkpoint_archive, run_dir
from cure_core.unlearning.runs import RunReport, run_id
from cure_core.workspace import Workspace
from tests.test_checkpoints import _digests
from tests.test_data import write_grouplens


@pytest.fixture
def user_copy(user_checkpoints, tmp_path):
    """The tiny qwen2 checkpoint and its adapter, copied: the test hashes every file of them."""
    model, adapter = user_checkpoints["qwen2"]
    return shutil.copytree(model, tmp_path / "user" / "model"), shutil.copytree(adapter, tmp_path / "user" / "adapter")


@pytest.fixture(autouse=True)
def small_retain_probe(monkeypatch):
    """Score 64 retain rows, not 1,400 text prompts: what is tested is the plumbing, not the metric."""
    monkeypatch.setattr("cure_core.evaluate.RETAIN_PROBE", 64)


@pytest.fixture
def data_dir(tmp_path, synthetic):
    return str(write_grouplens(tmp_path / "ml", synthetic))


def _flags(data_dir, model, adapter) -> list[str]:
    return ["--data", data_dir, "--model", str(model), "--adapter", str(adapter), "--profile", "compact"]


@pytest.mark.parametrize("with_retrain", [False, True], ids=["no Retrain", "--retrain-model"])
def test_unlearn_on_a_user_model_writes_only_into_the_cache(
    capsys, isolated_cache, synthetic, data_dir, user_copy, tmp_path, with_retrain
):
    model, adapter = user_copy
    folders = [model, adapter]
    flags = _flags(data_dir, model, adapter)
    if with_retrain:  # the base without the adapter stands in for a model trained without the forget set
        retrain = shutil.copytree(model, tmp_path / "user" / "retrain")
        folders.append(retrain)
        flags += ["--retrain-model", str(retrain)]
    before = _digests(*folders)
    argv = ["unlearn", *flags, "--method", "graddiff", "--steps", "2", "--batch-size", "16"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert _digests(*folders) == before
    assert "model: model + adapter; mode: full; trainable parameters:" in out
    if with_retrain:
        assert "JSD to Retrain" in out and "unavailable" not in out
    else:
        assert "Retrain: unavailable" in out and "JSD to Retrain" not in out

    (run,) = [p.name for p in (isolated_cache / "runs").iterdir()]
    report = RunReport.model_validate_json((run_dir(run) / "report.json").read_text())
    assert report.run == run and report.mode == "full" and report.model_label == "model + adapter"
    assert report.trainable_params == report.params_total > 0
    assert (report.retrain_unavailable is None) == with_retrain
    assert (report.jsd_to_retrain is not None) == with_retrain
    assert report.test_auc is not None and report.mia_auc is not None  # the model's own metrics, Retrain or not

    saved = run_dir(run) / "model"
    card = read_card(saved)
    assert card.kind == "checkpoint" and card.profile == "compact" and card.run == run
    assert card.unlearned_from is not None and card.unlearned_from.path == str(model)
    assert {"config.json", "model.safetensors", "tokenizer_config.json"} <= {p.name for p in saved.iterdir()}
    names = zipfile.ZipFile(io.BytesIO(checkpoint_archive(run))).namelist()
    assert sorted(names) == sorted(f"{run}/{p.name}" for p in saved.iterdir())

    # the saved folder is a checkpoint of its own: as --model it scores what the report says
    ws = Workspace.open(dataset=synthetic, source=ModelSource(model=str(saved), profile="compact", device="cpu"))
    sets = ws.data.sets(load_request(report.request))
    forget = ws.models.original().predict(ws.data.samples, sets.forget)
    assert utility(ws.data.samples.label[sets.forget], forget)["auc"] == pytest.approx(report.forget_auc, abs=1e-6)

    assert main(argv) == 0  # the same run again: read back from the cache, not recomputed
    assert f"run {run}:" in capsys.readouterr().out
    assert [p.name for p in (isolated_cache / "runs").iterdir()] == [run]
    assert _digests(*folders) == before


def test_compare_on_a_user_model_without_retrain(capsys, isolated_cache, data_dir, user_copy, tmp_path):
    model, adapter = user_copy
    before = _digests(model, adapter)
    out_dir = tmp_path / "compare"
    argv = ["compare", *_flags(data_dir, model, adapter), "--methods", "ga,graddiff", "--steps", "2"]
    assert main([*argv, "--strengths", "1e-4", "--batch-size", "16", "--out", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert _digests(model, adapter) == before
    assert out.count("JSD unavailable (no Retrain)") == 2
    assert "model: model + adapter; mode: full; trainable parameters:" in out
    assert "Retrain: unavailable" in out
    table = (out_dir / "comparison.md").read_text()
    assert "| Original" in table and "| Retrain" not in table and "| Gradient ascent" in table and "| GradDiff" in table
    assert (out_dir / "pareto.html").stat().st_size > 0
    assert len(list((isolated_cache / "runs").iterdir())) == 2


def test_run_ids_with_and_without_a_retrain():
    original = SimpleNamespace(card=ModelCard(fingerprint="a" * 64), capabilities=ITEM_CAPABILITIES)
    retrain = SimpleNamespace(card=ModelCard(fingerprint="b" * 64), capabilities=ITEM_CAPABILITIES)
    request, config = SimpleNamespace(id="users-abc"), json.dumps({"method": "npo", "strength": 1e-4})
    alone = run_id(original, None, request, config)
    assert alone == run_id(original, None, request, config) != run_id(original, retrain, request, config)
    # the ids of runs cached before Retrain became optional stay what they were
    spec = {
        "weights": "a" * 64,
        "retrain": "b" * 64,
        "request": "users-abc",
        "config": json.loads(config),
        "groups": "",
    }
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]
    assert run_id(original, retrain, request, config) == f"npo-{digest}"
    # a text model's id also holds its evaluation cap (its reports score seeded draws)
    text = SimpleNamespace(card=original.card, capabilities=TEXT_CAPABILITIES)
    spec["evaluation_cap"] = TEXT_EVAL_PROMPTS
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]
    assert run_id(text, retrain, request, config) == f"npo-{digest}"


def test_reports_saved_before_the_mode_fields_still_read(isolated_cache):
    from cure_core.comparison import ModelScores
    from cure_core.unlearning.methods import UnlearnConfig

    report = RunReport(
        name="ga",
        request="r",
        request_description="d",
        sizes={},
        model=ModelScores(),
        retrain=None,
        jsd_to_retrain=None,
        l2_to_retrain=None,
        method="ga",
        strength=1e-4,
        config=UnlearnConfig(method="ga"),
        seconds=1.0,
        params_updated=1,
        params_total=2,
        peak_memory_mib=1.0,
        peak_memory_kind="x",
    )
    old = {k: v for k, v in report.model_dump().items() if k not in ("mode", "trainable_params", "model_label")}
    again = RunReport.model_validate(old)
    assert (again.mode, again.trainable_params, again.model_label, again.mode_label) == ("full", None, None, "full")
    lora = report.model_copy(update={"config": UnlearnConfig(method="ga", lora=True, lora_rank=4)})
    assert lora.mode_label == "LoRA r=4"


def test_checkpoint_archive_zips_everything_under_model(isolated_cache):
    folder = run_dir("ga-0123456789") / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    (folder / "sub" / "part.bin").write_bytes(np.arange(3, dtype=np.int8).tobytes())
    archive = zipfile.ZipFile(io.BytesIO(checkpoint_archive("ga-0123456789")))
    assert sorted(archive.namelist()) == ["ga-0123456789/adapter_config.json", "ga-0123456789/sub/part.bin"]
    assert archive.read("ga-0123456789/sub/part.bin") == bytes([0, 1, 2])


def test_lora_unlearning_runs_every_method_on_a_llama_checkpoint(
    capsys, isolated_cache, data_dir, user_checkpoints, tmp_path
):
    """``cure unlearn --lora`` with every registry method on the tiny Llama (grouped-query
    attention) + its adapter, as the checkpoint maker wrote them: each run saves a safetensors
    adapter only, ``--save-merged`` adds a merged checkpoint, and the user's files never change."""
    from cure_core.unlearning.methods import METHODS

    model = shutil.copytree(user_checkpoints["llama"][0], tmp_path / "user" / "llama")
    adapter = shutil.copytree(user_checkpoints["llama"][1], tmp_path / "user" / "llama-lora")
    before = _digests(model, adapter)
    for method in METHODS:
        argv = ["unlearn", *_flags(data_dir, model, adapter), "--method", method, "--steps", "2", "--batch-size", "16"]
        argv += ["--lora"] + (["--save-merged"] if method == "npo" else [])
        assert main(argv) == 0, method
        assert "mode: LoRA r=8" in capsys.readouterr().out
    assert _digests(model, adapter) == before
    runs = sorted((isolated_cache / "runs").iterdir())
    assert len(runs) == len(METHODS)
    for folder in runs:
        saved = sorted(p.name for p in (folder / "model").iterdir())
        assert "adapter_model.safetensors" in saved and not any(n.endswith(".bin") for n in saved)
        report = RunReport.model_validate_json((folder / "report.json").read_text())
        assert report.mode == "lora" and report.trainable_params == report.params_total > 0
        assert (folder / "merged").exists() == (report.method == "npo")


def test_full_weight_cure_on_a_llama_checkpoint_saves_a_run_that_loads(isolated_cache, synthetic, user_checkpoints):
    """Full-weight ``cure`` on the tiny Llama + its adapter: working out the groups boots the
    bridge on the Original, and the run still trains the plain Hugging Face modules and saves a
    checkpoint that loads back and scores what the report says."""
    from cure_core.checkpoints import load_checkpoint
    from cure_core.circuits import AttributionSettings
    from cure_core.unlearning.methods import UnlearnConfig
    from cure_core.unlearning.run_store import load_run_model
    from cure_core.unlearning.runs import get_run

    model, adapter = user_checkpoints["llama"]
    source = ModelSource(model=str(model), adapter=str(adapter), profile="compact", device="cpu")
    ws = Workspace.open(dataset=synthetic, source=source)
    request = ws.data.default_request()
    few = AttributionSettings(corruption="history", steps=2, n_prompts=16, n_eval=8, batch_size=16)
    config = UnlearnConfig(method="cure", steps=2, batch_size=16)
    report = get_run(ws, request, config, attribution=few, quiet=True)

    assert report.mode == "full" and report.trainable_params == report.params_total > 0
    assert report.params_updated > 0
    saved = run_dir(report.run) / "model"
    assert read_card(saved).kind == "checkpoint"
    unlearned = load_run_model(ws.models, report.run)
    fresh = load_checkpoint(model, adapter, device="cpu").model  # the architecture's own tensors
    assert {n: t.shape for n, t in unlearned.model.state_dict().items()} == {
        n: t.shape for n, t in fresh.state_dict().items()
    }
    forget = ws.data.sets(request).forget
    auc = utility(ws.data.samples.label[forget], unlearned.predict(ws.data.samples, forget))["auc"]
    assert auc == pytest.approx(report.forget_auc, abs=1e-6)
