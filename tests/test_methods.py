"""The method registry, the run settings, the typed Comparison, the cached reference and the
study skeleton: invariants only, no trained model."""

from __future__ import annotations

import json
import typing
from types import SimpleNamespace

import plotly.graph_objects as go
import pytest
from pydantic import ValidationError

from cure_core import evaluate
from cure_core.comparison import Comparison, ModelScores, Utility
from cure_core.model.backends import ItemBackend, TextBackend
from cure_core.model.backends.item import ITEM_CAPABILITIES
from cure_core.model.card import ModelCard
from cure_core.model.recipe import Recipe, TextRecipe
from cure_core.studies.base import Study, StudyJob, StudyOutput
from cure_core.studies.common import StudySettings
from cure_core.studies.store import RESULT_FILE, load_results
from cure_core.unlearning.methods import METHODS, UnlearnConfig, UnlearnMethod
from cure_core.unlearning.runs import RunReport, run_id

CACHED_RUN_IDS = {
    "npo-266e61e25a": UnlearnConfig(method="npo"),
    "ga-b73330d892": UnlearnConfig(method="ga", steps=7, seed=2),
    "cure-2fbeca6655": UnlearnConfig(method="cure", strength=3e-4, forget_loss="teacher", row_rule="reset"),
    "cure-c2f0f8a9ce": UnlearnConfig(method="cure", strength=3e-3, forget_loss="teacher", lora=True),
    "pcgrad-7ddb5b2033": UnlearnConfig(method="pcgrad", retain_loss="kl", forget_loss="teacher", npo_beta=0.2),
}
"""Ids of runs cached by earlier versions (weights "a", Retrain "b", request "user-x"; the CURE
runs with groups key "g"): a run id hashes the config's fields and values, so these keep every
cached run findable (the LoRA fields enter an id only when ``lora`` is on)."""

FLAT_KEYS = {
    "name",
    "request",
    "request_description",
    "sizes",
    "evaluated",
    "test_auc",
    "test_acc",
    "test_logloss",
    "forget_auc",
    "forget_acc",
    "forget_logloss",
    "retrain_test_auc",
    "retrain_forget_auc",
    "retrain_forget_logloss",
    "jsd_to_retrain",
    "l2_to_retrain",
    "model",
    "retrain",
    "forget_auc_gap",
    "mia_auc",
    "retrain_mia_auc",
    "privleak",
    "retrain_unavailable",
    "retrain_model",
}
"""The keys saved reports and ``--json`` outputs have (``retrain_unavailable``: ``None`` unless a
user's checkpoint came without a Retrain; ``retrain_model``: the Retrain's path and fingerprint;
reports saved without either still load)."""


def test_every_method_is_one_registered_class_with_its_whole_definition():
    assert list(METHODS) == [
        "ga",
        "graddiff",
        "npo",
        "e2urec",
        "pcgrad",
        "sago",
        "cure",
        "cure-nocircuit",
        "cure-random",
    ]
    for name, method in METHODS.items():
        assert issubclass(method, UnlearnMethod) and method.name == name and method.label and method.help
        assert (
            list(method.strengths) == sorted(method.strengths)
            and method.default_strength() == method.strengths[len(method.strengths) // 2]
        )
    assert [m for m, method in METHODS.items() if method.needs_groups] == ["cure", "cure-nocircuit", "cure-random"]


def test_a_lora_grid_is_the_full_grid_scaled_with_clean_floats_everywhere_it_is_read():
    from cure_core.cli.parser import build_parser
    from cure_core.cli.unlearn_commands import configs
    from cure_core.studies.variants import VARIANTS
    from cure_core.unlearning.methods.base import LORA_STRENGTH_SCALE

    for method in METHODS.values():
        lora = method.grid(lora=True)
        assert method.grid() == method.strengths and len(lora) == len(method.strengths)
        for full, scaled in zip(method.strengths, lora, strict=True):
            assert scaled == pytest.approx(full * LORA_STRENGTH_SCALE, rel=1e-12) and scaled == float(repr(scaled))
            assert len(repr(scaled)) <= 6  # 0.003, never 0.0029999999999999996 in a run id
        assert method.default_strength(lora=True) == lora[len(lora) // 2]
    for v in VARIANTS:
        assert v.grid(lora=True) == tuple(float(f"{s * LORA_STRENGTH_SCALE:.6g}") for s in v.grid())
    for flags, lora in (([], False), (["--lora"], True)):
        args = build_parser("compare").parse_args(["compare", "--methods", "npo,cure", *flags])
        assert [c.strength for c in configs(args, ["npo", "cure"], None)] == [
            *METHODS["npo"].grid(lora),
            *METHODS["cure"].grid(lora),
        ]
        assert all(c.lora == lora for c in configs(args, ["npo"], [0.5]))


def test_cure_style_variants_are_exactly_those_running_cure_on_circuit_groups():
    from cure_core.studies.variants import CONTROLS, VARIANTS, is_cure_style, variant

    for v in VARIANTS + CONTROLS:
        assert v.cure_style == (v.method == "cure") and is_cure_style(v.label) == v.cure_style
        text = variant(v.label, embedding_rows=False)
        assert is_cure_style(text.label) == text.cure_style == v.cure_style and text.method == v.method
        assert text.config(1e-3).row_rule == "update" and text.grid() == v.grid()
        assert (text == v) == (v.config(1e-3).row_rule == "update")
        if text.label in {w.label for w in VARIANTS}:  # "CURE (teacher)": the very variant of that name
            assert text == variant(text.label)


def test_a_variant_is_checked_against_its_methods_arguments():
    from cure_core.studies.variants import Variant

    with pytest.raises(ValidationError, match="forget_loss"):
        Variant("GA (teacher)", "ga", {"forget_loss": "teacher"})  # GA has no forget_loss argument
    with pytest.raises(ValidationError, match="npo_beta"):
        Variant("E2URec-style (β)", "e2urec", {"npo_beta": 0.2})
    with pytest.raises(ValueError, match="text_label"):
        Variant("CURE (reset rows)", "cure", {"row_rule": "reset"})  # a text model has no rows to reset
    assert Variant("NPO", "npo").grid() == METHODS["npo"].grid()


def test_forget_objective_and_teacher_follow_the_method_or_forget_loss():
    fixed = {"ga": "ga", "graddiff": "ga", "npo": "npo", "e2urec": "teacher"}
    for forget_loss in ("npo", "ga", "teacher"):
        for name, spec in METHODS.items():
            method = spec.for_run(UnlearnConfig(method=name, forget_loss=forget_loss))
            assert method.forget_kind() == fixed.get(name, forget_loss)
            assert method.uses_teacher() == (method.forget_kind() == "teacher")


def test_each_method_reads_its_own_arguments_out_of_the_run_settings():
    config = UnlearnConfig(method="cure", retain_weight=0.5, retain_loss="kl", npo_beta=0.2, forget_loss="ga")
    for name, spec in METHODS.items():
        assert issubclass(UnlearnConfig, spec.arguments)  # every argument is a setting of the run
        args = spec.for_run(config.model_copy(update={"method": name})).args
        assert type(args) is spec.arguments and args.model_dump() == config.model_dump(include=set(args.model_fields))
    assert not METHODS["ga"].arguments.model_fields
    assert list(METHODS["npo"].arguments.model_fields) == [*METHODS["graddiff"].arguments.model_fields, "npo_beta"]


def test_cached_run_ids_are_unchanged_choices_are_literals_and_unknown_fields_are_refused():
    model = lambda sha: SimpleNamespace(card=ModelCard(fingerprint=sha), capabilities=ITEM_CAPABILITIES)  # noqa: E731
    for run, config in CACHED_RUN_IDS.items():
        groups = "g" if config.method == "cure" else ""
        assert run_id(model("a"), model("b"), SimpleNamespace(id="user-x"), config.id_json(), groups) == run
    lora_id = UnlearnConfig(method="npo", lora=True).id_json()
    assert lora_id.endswith('"lora":true,"lora_rank":8,"lora_alpha":16.0,"lora_targets":[]}')
    assert '"lora' not in UnlearnConfig(method="npo").id_json()
    assert typing.get_args(UnlearnConfig.model_fields["method"].annotation) == tuple(METHODS)
    for name in ("retain_loss", "forget_loss", "retain_rule", "shared_rule", "row_rule"):
        assert typing.get_origin(UnlearnConfig.model_fields[name].annotation) is typing.Literal
    with pytest.raises(ValidationError, match="n_layers"):
        UnlearnConfig(method="npo", n_layers=7)
    with pytest.raises(ValidationError):
        UnlearnConfig(method="magic")


def _comparison(name: str = "model", mia: bool = True) -> Comparison:
    def scores(auc: float, mia_loss: float) -> ModelScores:
        split = Utility(auc=auc, acc=0.7, logloss=0.6, n=10)
        return ModelScores(test=split, forget=split, retain=split, mia={"loss": mia_loss, "zlib": None} if mia else {})

    return Comparison(
        name=name,
        request="user-x",
        request_description="1 user",
        sizes={"forget": 10},
        model=scores(0.8, 0.6),
        retrain=scores(0.7, 0.5),
        jsd_to_retrain=0.01,
        l2_to_retrain=0.1,
    )


def test_comparison_dumps_the_flat_keys_and_round_trips():
    comparison = _comparison()
    dumped = comparison.model_dump()
    assert set(dumped) == FLAT_KEYS
    assert dumped["model"]["test"]["auc"] == 0.8 and dumped["retrain"]["mia"]["loss"] == 0.5
    assert (
        dumped["forget_auc_gap"] == pytest.approx(0.1) and dumped["mia_auc"] == 0.6 and dumped["retrain_mia_auc"] == 0.5
    )
    assert dumped["privleak"] == {"loss": pytest.approx(-20.0)}  # an attack undefined on either side is left out
    assert Comparison.model_validate_json(comparison.model_dump_json()) == comparison
    assert _comparison(mia=False).model_dump()["privleak"] == {} and _comparison(mia=False).mia_auc is None


def test_comparison_rows():
    comparison = _comparison()
    assert comparison.versus(["test AUC", "forget LogLoss"]) == [
        ("test AUC", 0.8, 0.7),
        ("forget LogLoss", 0.6, 0.6),
        ("MIA AUC (loss)", 0.6, 0.5),
        ("MIA AUC (zlib)", None, None),
    ]
    original, retrain = comparison.reference_rows(12.0, 10.0)
    assert (
        original["method"] == "Original"
        and original["seconds"] == 12.0
        and original["test_auc"] == 0.8
        and original["jsd_to_retrain"] == 0.01
    )
    assert (
        retrain["method"] == "Retrain"
        and retrain["test_auc"] == 0.7
        and retrain["jsd_to_retrain"] == 0.0
        and retrain["forget_auc_gap"] == 0.0
    )


def test_run_report_keeps_the_saved_keys_and_loads_them_back():
    config = UnlearnConfig(method="cure", strength=3e-4)
    cost = {
        "seconds": 1.5,
        "params_updated": 10,
        "params_total": 100,
        "peak_memory_mib": 5.0,
        "peak_memory_kind": "process peak RSS",
    }
    report = RunReport(**dict(_comparison("cure")), method="cure", strength=3e-4, config=config, run="cure-abc", **cost)
    dumped = report.model_dump()
    assert FLAT_KEYS | {
        "method",
        "strength",
        "config",
        "run",
        "groups_used",
        "versions",
        "group_warnings",
        "separability",
        "mode",
        "trainable_params",
        "model_label",
        *cost,
    } == set(dumped)
    assert dumped["config"] == config.model_dump()
    assert RunReport.model_validate_json(json.dumps(dumped)) == report
    row = report.row()
    assert (
        row["method"] == METHODS["cure"].label
        and row["strength"] == 3e-4
        and row["privleak_loss"] == pytest.approx(-20.0)
    )


def test_the_reference_is_computed_once_per_pair_of_weights_and_request(monkeypatch):
    calls = []

    def compute(original, retrain, request, samples, sets, name="model"):
        calls.append(name)
        return _comparison(name)

    monkeypatch.setattr(evaluate, "compare_to_retrain", compute)
    sets = SimpleNamespace(sizes=lambda: {"forget": 10})
    request = SimpleNamespace(id="user-x")
    model = lambda sha: SimpleNamespace(card=ModelCard(fingerprint=sha), capabilities=ITEM_CAPABILITIES)  # noqa: E731
    first = evaluate.reference_comparison(model("a"), model("b"), request, None, sets)
    assert evaluate.reference_comparison(model("a"), model("b"), request, None, sets) == first and calls == ["original"]
    evaluate.reference_comparison(model("a"), model("c"), request, None, sets)  # another Retrain: another reference
    assert len(calls) == 2
    evaluate.reference_comparison(model("a"), SimpleNamespace(card=ModelCard()), request, None, sets)  # never cached
    evaluate.reference_comparison(model("a"), SimpleNamespace(card=ModelCard()), request, None, sets)
    assert len(calls) == 4


class _Counting(Study):
    name = "pareto"  # any registered name: ``about`` reads it
    settings = StudySettings

    def __init__(self) -> None:
        self.computed: list[str] = []

    def compute(self, job: StudyJob) -> StudyOutput:
        job.open({"data": "x"})
        job.bar(2)
        values = []
        for cell in ("a", "b"):
            values.append(job.cell(cell, lambda cell=cell: self.computed.append(cell) or cell))
            job.tick(cell=cell)
        return StudyOutput({"cells": [{"value": v} for v in values]}, {"empty": go.Figure()}, ["done"])


def test_the_study_skeleton_times_resumes_reports_progress_and_saves():
    study, updates = _Counting(), []
    item_ws = SimpleNamespace(models=SimpleNamespace(backend=ItemBackend(Recipe())))
    first = study.run(
        item_ws,
        StudySettings(quick_mode=True),
        progress=lambda done, total, info: updates.append((done, total)),
        quiet=True,
    )  # type: ignore[arg-type]
    assert first["tables"]["cells"] == [{"value": "a"}, {"value": "b"}] and study.computed == ["a", "b"]
    assert (
        updates == [(1, 2), (2, 2)] and first["command"] == "cure study pareto --quick" and first["summary"] == ["done"]
    )
    again = study.run(item_ws, StudySettings(quick_mode=True), quiet=True)  # type: ignore[arg-type]
    assert study.computed == ["a", "b"], "saved cells are not recomputed"
    assert len(again["invocations"]) == 2 and again["key"] == first["key"]
    assert load_results()[0]["key"] == first["key"]


def test_a_corrupt_study_result_is_skipped_with_a_warning(isolated_cache):
    folder = isolated_cache / "studies" / "pareto-0123456789"
    folder.mkdir(parents=True)
    (folder / RESULT_FILE).write_text("{broken")
    with pytest.warns(UserWarning, match=r"pareto-0123456789.*rerun"):
        assert load_results() == []


def test_a_report_saved_before_retrain_unavailable_still_loads():
    dumped = _comparison("x").model_dump()
    dumped.pop("retrain_unavailable")
    loaded = Comparison.model_validate_json(json.dumps(dumped))
    assert loaded.retrain_unavailable is None and loaded == _comparison("x")


def test_a_study_command_names_the_recipe_request_and_changed_settings():
    from cure_core.studies.registry import STUDIES

    pareto = STUDIES["pareto"]
    text_ws = SimpleNamespace(models=SimpleNamespace(backend=TextBackend(TextRecipe())))
    settings = pareto.settings(seeds=[0])
    assert pareto.command(text_ws, settings) == (
        """cure study pareto --recipe text --request default --settings-json '{"seeds": [0]}'"""
    )
    small = SimpleNamespace(models=SimpleNamespace(backend=ItemBackend(Recipe(n_layer=2))))
    assert pareto.command(small, pareto.settings.quick()) == (
        """cure study pareto --recipe-json '{"n_layer": 2}' --quick --request default"""
    )
