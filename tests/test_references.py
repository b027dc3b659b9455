"""Reference models do not depend on the machine: one stopping rule (epochs and validation
patience, never wall time), cut-short or unreadable cache entries are rebuilt, training threads
never oversubscribe the cores, and whatever is compared with a Retrain is keyed by its weights."""

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from cure_core.errors import CureError
from cure_core.model import training
from cure_core.model.backends import ItemBackend
from cure_core.model.backends.item import ITEM_CAPABILITIES, cut_short
from cure_core.model.card import ModelCard, read_card
from cure_core.model.store import CorruptModelError, load_recommender
from cure_core.model.training import stop_reason, train
from cure_core.model.workers import available_cores, worker_threads
from cure_core.studies.registry import STUDIES
from cure_core.studies.store import weights_key
from cure_core.unlearning.runs import run_id
from cure_core.workspace import Workspace
from tests.tiny_recipes import TINY_RECIPE


@pytest.fixture(scope="module")
def saved(synthetic, tmp_path_factory):
    """A tiny Original trained once, in this module's own cache; tests corrupt copies of it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CURE_CACHE", str(tmp_path_factory.mktemp("references-cache")))
        ws = Workspace.open(dataset=synthetic, recipe=TINY_RECIPE)
        return ws, ws.models.original(quiet=True).path


def cached_copy(saved) -> tuple[Workspace, Path]:
    """The saved model copied into this test's cache, where the workspace looks for it."""
    ws, path = saved
    folder = ws.models.model_dir("original")
    shutil.copytree(path, folder, dirs_exist_ok=True)
    return ws, folder


@pytest.mark.parametrize(
    ("aucs", "max_epochs", "patience", "reason"),
    [
        ([], 8, 3, None),
        ([0.6, 0.7], 8, 3, None),
        ([0.6, 0.7, 0.7, 0.69, 0.65], 8, 3, "patience"),
        ([0.6, 0.5, 0.5, 0.5], 8, 3, "patience"),
        ([0.6, 0.7, 0.8], 3, 3, "max_epochs"),
        ([0.8, 0.7], 2, 1, "patience"),
    ],
)
def test_stop_reason_is_epochs_and_patience_only(aucs, max_epochs, patience, reason):
    assert stop_reason(aucs, max_epochs, patience) == reason


def test_training_does_not_depend_on_the_clock(tiny_ws, monkeypatch):
    """A clock that jumps an hour per reading (a very busy machine) gives the same weights."""
    sets = tiny_ws.models.train_sets("original")
    plan = lambda: ItemBackend(TINY_RECIPE).training_plan(tiny_ws.data.dataset, tiny_ws.data.samples, sets)  # noqa: E731
    idle, idle_curve, idle_stop = train(plan(), quiet=True)
    hours = iter(range(0, 10**6, 3600))
    monkeypatch.setattr(training, "time", SimpleNamespace(perf_counter=lambda: float(next(hours))))
    busy, busy_curve, busy_stop = train(plan(), quiet=True)
    assert busy_curve[-1]["seconds"] >= 3600 and idle_stop == busy_stop
    assert [r["valid_auc"] for r in busy_curve] == [r["valid_auc"] for r in idle_curve]
    for (name, a), b in zip(idle.model.state_dict().items(), busy.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_model_cut_short_by_a_wall_clock_budget_is_retrained(saved):
    ws, folder = cached_copy(saved)
    card = read_card(folder)
    assert card.stopped_by in ("patience", "max_epochs") and not cut_short(card)
    meta = json.loads((folder / "meta.json").read_text())
    meta["curve"] = meta["curve"][:1]  # what the old 10-minute budget left on a busy machine
    (folder / "meta.json").write_text(json.dumps(meta))
    assert cut_short(read_card(folder))
    with pytest.warns(UserWarning, match=r"stopped after 1 of 3 epochs.*cannot serve as Original"):
        assert ws.models.load_model("original") is None
    assert not folder.exists()


def _no_vocab(folder: Path) -> None:
    (folder / "vocab.json").unlink()


def _vocab(value) -> object:
    return lambda folder: (folder / "vocab.json").write_text(json.dumps(value))


def _shorter_vocab(folder: Path) -> None:
    (folder / "vocab.json").write_text(json.dumps(json.loads((folder / "vocab.json").read_text())[:-1]))


def _meta(value) -> object:
    return lambda folder: (folder / "meta.json").write_text(json.dumps(value))


@pytest.mark.parametrize(
    "damage",
    [
        _no_vocab,
        _vocab({"<pad>": 0}),
        _vocab([1, 2, 3]),
        _vocab("tokens"),
        _shorter_vocab,
        _vocab(["x"] * 5),
        _meta([]),
        _meta({"mode": "item", "weights_sha256": 3}),
        _meta({"card_version": 1, "kind": "item", "file_sha256": "0" * 64}),
        _meta({"card_version": 2, "kind": "item"}),
    ],
    ids=[
        "no-vocab",
        "vocab-dict",
        "vocab-ints",
        "vocab-string",
        "vocab-short",
        "vocab-no-specials",
        "meta-list",
        "legacy-meta-bad-sha",
        "card-wrong-sha",
        "card-from-a-later-version",
    ],
)
def test_unreadable_model_folder_is_corrupt_and_rebuilt(saved, damage):
    ws, folder = cached_copy(saved)
    damage(folder)
    with pytest.raises(CorruptModelError):
        load_recommender(folder, ws.data.samples, ItemBackend())
    with pytest.warns(UserWarning, match="retraining"):
        assert ws.models.load_model("original") is None


@pytest.mark.parametrize("threads", [-3, 0, available_cores() + 1])
def test_training_threads_outside_the_cores_are_refused(tiny_ws, threads):
    with pytest.raises(CureError, match=rf"--threads {threads} is outside 1\.\.{available_cores()}"):
        tiny_ws.models.train_model("original", threads=threads, quiet=True)


def test_parallel_workers_split_the_cores():
    assert [worker_threads(cores, 2) for cores in (1, 2, 3, 4, 16)] == [1, 1, 1, 2, 8]


def test_run_id_changes_with_the_retrain_it_is_compared_with():
    original = SimpleNamespace(card=ModelCard(fingerprint="a" * 64), capabilities=ITEM_CAPABILITIES)
    retrain, retrained = (
        SimpleNamespace(card=ModelCard(fingerprint="b" * 64)),
        SimpleNamespace(card=ModelCard(fingerprint="c" * 64)),
    )
    request, config = SimpleNamespace(id="users-abc"), json.dumps({"method": "npo", "strength": 1e-4})
    assert run_id(original, retrain, request, config) == run_id(original, retrain, request, config)
    assert run_id(original, retrain, request, config) != run_id(original, retrained, request, config)


def test_study_cells_are_not_reused_against_another_retrain(tiny_ws, monkeypatch):
    """A study finished against one Retrain is recomputed, not read back, against a retrained one."""
    settings = (
        STUDIES["pareto"].settings.quick().model_copy(update={"variants": ["GA"], "seeds": [0], "grid_points": 1})
    )
    first = STUDIES["pareto"].run(tiny_ws, settings, quiet=True)
    original, retrain = tiny_ws.models.ensure_models(tiny_ws.data.default_request(), quiet=True)
    retrain.card = retrain.card.model_copy(update={"fingerprint": "f" * 64})
    monkeypatch.setattr(tiny_ws.models, "ensure_models", lambda *args, **kwargs: (original, retrain))
    again = STUDIES["pareto"].run(tiny_ws, settings, quiet=True)
    assert again["key"] != first["key"] and len(again["invocations"]) == 1
    assert again["tables"]["runs"][0]["run"] != first["tables"]["runs"][0]["run"]  # run ids name the Retrain too
    assert weights_key(ModelCard(fingerprint="0123456789abcdef")) == "0123456789"
