"""The four studies with --quick settings on synthetic data and the tiny model; resuming; report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cure_core.studies.difficulty import difficulty_scores
from cure_core.studies.registry import STUDIES
from cure_core.studies.store import StudyStore, cached_models, load_results, model_label

ROOT = Path(__file__).resolve().parent.parent


def _quick(name: str, **update):
    return STUDIES[name].settings.quick().model_copy(update=update)


def test_pareto_quick_has_every_run_and_a_front(tiny_ws):
    result = STUDIES["pareto"].run(tiny_ws, _quick("pareto"), quiet=True)
    runs = result["tables"]["runs"]
    assert len(runs) == 3 * 2 * 2  # variants × strengths × seeds
    summary = result["tables"]["summary"]
    assert len(summary) == 6 and all(r["seeds"] == 2 for r in summary)
    assert any(r["on_front"] for r in summary)
    seeds_differ = {r["variant"]: [] for r in runs}
    for r in runs:
        seeds_differ[r["variant"]].append(r["jsd_to_retrain"])
    assert all(len(set(v)) > 1 for v in seeds_differ.values())  # seeds change the batches
    assert "pareto" in result["figures"] and result["summary"]
    assert load_results()[0]["key"] == result["key"]


def test_study_resumes_from_its_cells(tiny_ws, monkeypatch):
    settings = _quick("pareto", variants=["GA"], seeds=[0])
    first = STUDIES["pareto"].run(tiny_ws, settings, quiet=True)
    import cure_core.studies.pareto as pareto

    def fail(*args, **kwargs):
        raise AssertionError("a finished cell was recomputed")

    monkeypatch.setattr(pareto, "get_run", fail)
    again = STUDIES["pareto"].run(tiny_ws, settings, quiet=True)
    assert again["tables"]["runs"] == first["tables"]["runs"]
    assert len(again["invocations"]) == 2 and again["total_seconds"] >= first["seconds"]


def test_store_cell_recomputes_a_corrupt_cell(tmp_path):
    store = StudyStore("unit", STUDIES["pareto"].settings(), {"x": 1})
    assert store.cell("a", lambda: 1) == 1
    (store.folder / "cells" / "a.json").write_text("{broken")
    assert store.cell("a", lambda: 2) == 2
    assert store.cell("a", lambda: 3) == 2


def test_deletion_rate_quick_reports_every_rate_with_retrain(tiny_ws):
    result = STUDIES["deletion-rate"].run(tiny_ws, _quick("deletion-rate"), quiet=True)
    rows = result["tables"]["rates"]
    assert {r["rate"] for r in rows} == {0.05, 0.2}
    for rate in (0.05, 0.2):
        methods = {r["method"] for r in rows if r["rate"] == rate}
        assert methods == {"Original", "Retrain", "GA", "CURE (NPO)"}
    assert all(r["jsd_to_retrain"] == 0 for r in rows if r["method"] == "Retrain")
    strengths = {s["variant"]: s["strength"] for s in result["tables"]["strengths"]}
    assert all(r["strength"] == strengths[r["method"]] for r in rows if r["method"] in strengths)
    assert len(result["summary"]) == 2


def test_stability_quick_compares_seeds_and_resamples(tiny_ws, monkeypatch):
    """Invariants only (which axis is the more stable is a finding, left to the study itself):
    one pair per axis, every Jaccard in [0, 1] and equal to the one of the stored runs, and the
    resample axis attributes the very same model (same weights) while the seed axis trains another."""
    import cure_core.studies.stability as stability
    from analysis.compare import jaccard

    models: list[tuple[int, str]] = []
    real_context = stability.circuit_context

    def recording_context(ws, request):
        ctx = real_context(ws, request)
        models.append((ws.models.backend.recipe.seed, ctx.rec.card.fingerprint))
        return ctx

    monkeypatch.setattr(stability, "circuit_context", recording_context)
    settings = _quick("stability")
    result = STUDIES["stability"].run(tiny_ws, settings, quiet=True)
    pairs = result["tables"]["pairs"]
    assert sorted(p["axis"] for p in pairs) == ["model seed", "prompt resample"]  # 2 seeds, 2 resamples: one pair each
    for p in pairs:
        for column in ("forget edges", "retain edges", "forget rows", *stability.SPLIT_GROUPS):
            assert p[column] is None or 0 <= p[column] <= 1, (column, p[column])
    assert {(r["model_seed"], r["resample"]) for r in result["tables"]["runs"]} == {(0, 0), (1, 0), (0, 1)}
    seed0 = {sha for seed, sha in models if seed == 0}
    seed1 = {sha for seed, sha in models if seed == 1}
    assert len(models) == 3 and len(seed0) == 1 and len(seed1) == 1, models  # resamples reuse the seed-0 model
    assert seed0 == {tiny_ws.models.original(quiet=True).card.fingerprint} and seed0 != seed1
    by_axis = {p["axis"]: p for p in pairs}
    splits = {combo: stability.split_of(tiny_ws, "default", *combo, settings) for combo in ((0, 0), (1, 0), (0, 1))}
    for axis, (a, b) in (("model seed", ((0, 0), (1, 0))), ("prompt resample", ((0, 0), (0, 1)))):
        for s in ("forget", "retain"):
            x, y = set(splits[a]["edges"][s]), set(splits[b]["edges"][s])
            assert len(x) == len(y) == settings.top_n and jaccard(x, x) == 1.0
            assert by_axis[axis][f"{s} edges"] == jaccard(x, y)
    assert any("separability" in line and "importance-weighted" in line for line in result["summary"])
    for run in result["tables"]["runs"]:  # both separabilities per run, as split_of computed them
        split = splits[(run["model_seed"], run["resample"])]
        assert run["separability_weighted"] == split["separability_weighted"] > 0
    assert "forget rows" in pairs[0]  # embedding rows counted apart from heads/MLPs


def test_difficulty_scores_leave_anchors_out():
    vectors = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.7, 0.7]])
    scores = difficulty_scores(vectors, easy=np.array([0, 1]), hard=np.array([2, 3]))
    assert scores[2] > 0 > scores[0] and scores[3] > 0 > scores[1]
    assert abs(scores[4]) < 0.1
    # user 0's easy centre is user 1 alone (left out of its own anchor mean)
    assert scores[0] == pytest.approx(
        vectors[0] @ (vectors[2:4].mean(0)) / np.linalg.norm(vectors[2:4].mean(0))
        - vectors[0] @ vectors[1] / np.linalg.norm(vectors[1])
    )


def test_difficulty_quick_correlates_with_forgetting(tiny_ws):
    result = STUDIES["difficulty"].run(tiny_ws, _quick("difficulty", request="users:20%"), quiet=True)
    users = result["tables"]["users"]
    assert len(users) >= 10 and sum(u["anchor"] == "easy" for u in users) == 2
    assert all(np.isfinite(u["difficulty"]) and np.isfinite(u["cure_nll_rise"]) for u in users)
    assert {c["predictor"] for c in result["tables"]["correlations"]} == {"difficulty", "probe_rise"}
    assert json.dumps(result)  # JSON-able end to end


def test_report_html_and_page_show_a_study(tiny_ws, tmp_path, monkeypatch):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from cure_core.cli import main
    from cure_core.studies.report import build_report

    result = STUDIES["pareto"].run(tiny_ws, _quick("pareto", variants=["GA"], seeds=[0]), quiet=True)
    text = build_report()
    assert "<h1>CURE Studio report</h1>" in text and result["summary"][0].split(":")[0] in text
    assert text.count("plotly.js v") >= 1 and 'src="https://cdn' not in text  # plotly.js inline, no network
    assert main(["report", "--out", str(tmp_path / "r.html")]) == 0 and (tmp_path / "r.html").stat().st_size > 1_000_000
    model = tiny_ws.models.model_dir("original").name
    assert model in model_label(result, cached_models()) and model in text, (
        "each result names the model it was computed on"
    )
    assert "no longer cached" in model_label({"context": {"weights": "0" * 64}}, cached_models())

    st.cache_resource.clear()
    monkeypatch.syspath_prepend(str(ROOT / "app"))  # `streamlit run app/Home.py` puts app/ on the path for its pages
    at = AppTest.from_file(str(ROOT / "app" / "pages" / "4_Report.py"), default_timeout=60).run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    assert any("Pareto front" in m.value for m in at.markdown)
    assert any(model in option for option in at.selectbox[0].options)
    assert len(at.get("download_button")) == 1


def test_report_page_without_results_says_what_to_run():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app" / "pages" / "4_Report.py"), default_timeout=60).run()
    assert not at.exception and any("No study has finished" in i.value for i in at.info)


def test_cli_study_refuses_bad_settings(capsys):
    from cure_core.cli import main

    assert main(["study", "stability", "--request", "default"]) == 2
    assert "takes no --request" in capsys.readouterr().err
    assert main(["study", "pareto", "--settings-json", '{"seeds": "x"}']) == 2
    assert "invalid pareto settings" in capsys.readouterr().err


def test_modules_only_drops_embedding_rows():
    from cure_core.studies.stability import modules_only, rows_only

    assert modules_only(["a0.h1", "m2", "u:26", "i:626"]) == {"a0.h1", "m2"}
    assert rows_only(["a0.h1", "m2", "u:26", "i:626"]) == {"u:26", "i:626"}


# The item-model tests above cover every variant and rate; on the text recipe one CURE-style
# variant (the kind whose label names a row rule) is enough to run each study's text path.
TEXT_QUICK = {"pareto": {"variants": ["CURE (NPO)"], "seeds": [0]}, "deletion-rate": {"rates": [0.05]}}


@pytest.mark.parametrize("name", ["pareto", "deletion-rate", "stability", "difficulty"])
def test_every_study_runs_quick_on_the_text_recipe(name, synthetic):
    """Each study on the text model trained here (tiny text recipe): it finishes with tables and a
    summary; no variant resets embedding rows (a text model has none)."""
    from cure_core.workspace import Workspace
    from tests.tiny_recipes import TINY_TEXT

    ws = Workspace.open(dataset=synthetic, recipe=TINY_TEXT)
    result = STUDIES[name].run(ws, _quick(name, **TEXT_QUICK.get(name, {})), quiet=True)
    assert result["summary"] and result["tables"]
    runs = result["tables"].get("runs", [])
    assert not any("reset rows" in str(r.get("variant", "")) for r in runs)


def test_two_rankings_say_when_jsd_and_the_forget_gap_disagree():
    import pandas as pd

    from cure_core.studies.pareto import two_rankings

    refs = {"Original": {"forget_auc_gap": 0.106}}
    table = pd.DataFrame(
        {
            "variant": ["CURE (NPO)", "E2URec-style"],
            "strength": [1e-3, 3e-3],
            "jsd_to_retrain_mean": [0.0106, 0.0150],
            "abs_gap_mean": [0.106, 0.028],
        }
    )
    line = two_rankings(table, refs)
    assert line.startswith("The rankings disagree: lowest JSD CURE (NPO) @ 0.001")
    assert "smallest |forget AUC − Retrain's| E2URec-style @ 0.003 (0.0280" in line and "Original's gap 0.1060" in line
    agree = two_rankings(table.assign(abs_gap_mean=[0.01, 0.02]), refs)
    assert agree.startswith("Both rankings agree: CURE (NPO) @ 0.001")


def test_deletion_rate_verdict_ranks_by_the_forget_gap_too():
    import pandas as pd

    from cure_core.studies.deletion_rate import verdict

    common = {"rate": 0.05, "test_auc": 0.8, "mia_auc": 0.5, "control_draws": None}
    rows = [
        {**common, "method": "Original", "jsd_to_retrain": 0.016, "forget_auc": 0.78, "seconds": 1},
        {**common, "method": "Retrain", "jsd_to_retrain": 0.0, "forget_auc": 0.68, "seconds": 100},
        {**common, "method": "CURE (NPO)", "jsd_to_retrain": 0.0106, "forget_auc": 0.78, "seconds": 3},
        {**common, "method": "E2URec-style", "jsd_to_retrain": 0.015, "forget_auc": 0.70, "seconds": 3},
    ]
    (line,) = verdict(pd.DataFrame(rows))
    assert "closest to Retrain is CURE (NPO) (JSD 0.01060" in line
    assert "by |forget AUC − Retrain's| the closest is E2URec-style (0.0200; Original 0.1000)" in line
    assert "JSD and the forget-AUC gap disagree" in line


def test_pareto_verdict_on_one_seed_claims_no_spread():
    import pandas as pd

    from cure_core.studies.pareto import summarize, verdict

    refs = {"Original": {"test_auc": 0.80, "jsd_to_retrain": 0.02, "forget_auc_gap": 0.1}}
    common = {"test_auc": 0.80, "forget_auc": 0.7, "mia_auc": 0.5, "seconds": 1.0, "seed": 0}
    runs = pd.DataFrame(
        [
            {**common, "variant": "CURE (NPO)", "strength": 1e-3, "jsd_to_retrain": 0.010, "forget_auc_gap": 0.05},
            {**common, "variant": "GA", "strength": 1e-3, "jsd_to_retrain": 0.015, "forget_auc_gap": 0.02},
        ]
    )
    lines = verdict(summarize(runs), refs)
    assert "CURE (NPO) @ 0.001: 0.01000 vs best baseline GA @ 0.001: 0.01500" in lines[1]
    assert lines[1].endswith("CURE-style is ahead on one seed (no spread measured).") and "nan" not in lines[1]
    two = pd.concat([runs, runs.assign(seed=1, jsd_to_retrain=[0.013, 0.012])])
    assert verdict(summarize(two), refs)[1].endswith("CURE-style is ahead within the seed spread.")
    worse = runs.assign(jsd_to_retrain=[0.02, 0.01])
    assert verdict(summarize(worse), refs)[1].endswith("CURE-style loses.")
