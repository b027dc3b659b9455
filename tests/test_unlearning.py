"""Parameter slices, every unlearning method, CURE's group rules, cached and cancelled runs and the
CLI's unlearn, compare and groups commands, on the tiny item model."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import torch
from pydantic import ValidationError
from tolerances import assert_close

from cure_core import cli
from cure_core.errors import CureError
from cure_core.groups import GroupSettings, ModuleGroups
from cure_core.model.store import file_sha256
from cure_core.modules import parameter_mask
from cure_core.unlearning.methods import METHODS, UnlearnConfig
from cure_core.unlearning.runner import UnlearningDiverged, unlearn
from cure_core.unlearning.runs import get_run, load_report
from cure_core.workspace import Workspace
from tests.test_data import write_grouplens
from tests.tiny_recipes import TINY_RECIPE


@pytest.fixture(scope="module")
def setup(synthetic, tmp_path_factory):
    cache = tmp_path_factory.mktemp("unlearning-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CURE_CACHE", str(cache))
        ws = Workspace.open(dataset=synthetic, recipe=TINY_RECIPE)
        request = ws.data.default_request()
        original = ws.models.original(quiet=True)
        return ws, request, original, cache


def test_parameter_masks_cover_exactly_the_modules_slices(setup):
    _, _, original, _ = setup
    model = original.model
    masks = parameter_mask(model, ["a1.h0", "m0", "u:3"], original.encoder.vocab.index)
    d, dh = 32, 16
    attn = masks["transformer.h.1.attn.c_attn.weight"]
    assert attn.sum() == 3 * d * dh and attn[:, :dh].all() and not attn[:, dh:d].any() and attn[:, d : d + dh].all()
    assert (
        masks["transformer.h.1.attn.c_proj.weight"][:dh].all()
        and not masks["transformer.h.1.attn.c_proj.weight"][dh:].any()
    )
    assert not masks["transformer.h.1.attn.c_proj.bias"].any()
    assert masks["transformer.h.0.mlp.c_fc.weight"].all() and not masks["transformer.h.1.mlp.c_fc.weight"].any()
    row = original.encoder.vocab.index["u:3"]
    assert masks["transformer.wte.weight"][row].all() and masks["transformer.wte.weight"].sum() == d
    with pytest.raises(CureError, match="unknown module"):
        parameter_mask(model, ["z9"])


@pytest.mark.parametrize("method", [m for m, spec in METHODS.items() if not spec.needs_groups])
def test_every_method_moves_the_forget_loss_the_right_way_on_a_copy(setup, method):
    ws, request, original, _ = setup
    sets = ws.data.sets(request)
    before = [p.detach().clone() for p in original.model.parameters()]
    # α = 0 isolates the forget objective, which every method must then move the right way
    # (the distillation starts next to its teacher on this tiny model, so it takes smaller steps)
    strength = 1e-5 if method == "e2urec" else 3e-3  # Adam takes lr-sized steps even on a KL of 1e-6
    config = UnlearnConfig(
        method=method, strength=strength, steps=8, batch_size=32, probe_every=4, probe_size=32, retain_weight=0.0
    )
    result = unlearn(original, ws.data.samples, sets, request, config)
    assert all(torch.equal(a, b) for a, b in zip(before, original.model.parameters(), strict=True)), (
        "the original must not change"
    )
    idx = sets.forget[:200]
    answers = ws.data.samples.label[idx]
    nll = lambda rec: float(-rec.predict(ws.data.samples, idx).answer_logp(answers).mean())  # noqa: E731
    if method == "e2urec":  # distils the forget answers towards the original's <unk_user> answers
        unknown = original.last_logits(original.encode(ws.data.samples, idx, np.zeros(len(idx), bool))).detach()
        teacher_margin = (unknown[:, original.encoder.yes_id] - unknown[:, original.encoder.no_id]).numpy()
        gap = lambda rec: float(np.abs(rec.predict(ws.data.samples, idx).margin - teacher_margin).mean())  # noqa: E731
        assert gap(result.model) < gap(original)
    else:
        assert nll(result.model) > nll(original)
    assert (
        len(result.history) == 8
        and "forget_auc" in result.history[3]
        and np.isfinite(result.history[-1]["forget_loss"])
    )


def test_cure_updates_only_its_groups_slices(setup):
    ws, request, original, _ = setup
    sets = ws.data.sets(request)
    table = pd.DataFrame(
        {
            "module": ["a0.h1", "m1", "a1.h0"],
            "kind": ["head", "mlp", "head"],
            "group": ["forget-specific", "task-shared", "outside"],
        }
    )
    groups = ModuleGroups(table=table, separability={}, settings=GroupSettings(), warnings=[])
    result = unlearn(
        original,
        ws.data.samples,
        sets,
        request,
        UnlearnConfig(method="cure", strength=3e-3, steps=4, batch_size=32, probe_size=32),
        groups,
    )
    masks = parameter_mask(original.model, ["a0.h1", "m1"], original.encoder.vocab.index)
    changed_inside = False
    for (name, new), old in zip(result.model.model.named_parameters(), original.model.parameters(), strict=True):
        outside = ~masks[name]
        assert torch.equal(new[outside], old[outside]), f"{name} changed outside the groups"
        changed_inside |= not torch.equal(new[masks[name]], old[masks[name]])
    assert changed_inside
    assert result.params_updated == sum(int(m.sum()) for m in masks.values())
    assert {"cos_forget", "cos_shared"} <= set(result.history[0])


def test_cure_without_circuits_treats_every_head_and_mlp_as_shared(setup):
    """The ablation keeps CURE's rules but lets no circuit decide: the head the circuits left
    outside is updated too, the forget-specific user row is still reset."""
    ws, request, original, _ = setup
    sets = ws.data.sets(request)
    row = f"u:{request.users[0]}"
    table = pd.DataFrame(
        {
            "module": ["a0.h1", "m1", "a1.h0", row],
            "kind": ["head", "mlp", "head", "user row"],
            "group": ["forget-specific", "task-shared", "outside", "forget-specific"],
        }
    )
    groups = ModuleGroups(table=table, separability={}, settings=GroupSettings(), warnings=[])
    ablated = groups.without_circuits()
    assert ablated.members("task-shared") == ["a0.h1", "m1", "a1.h0"] and ablated.members("forget-specific") == [row]
    assert groups.members("outside") == ["a1.h0"], "the original groups are left as they were"
    config = UnlearnConfig(
        method="cure-nocircuit",
        strength=3e-3,
        steps=4,
        batch_size=32,
        probe_size=32,
        forget_loss="teacher",
        row_rule="reset",
    )
    result = unlearn(original, ws.data.samples, sets, request, config, groups)
    masks = parameter_mask(original.model, ["a0.h1", "m1", "a1.h0", row], original.encoder.vocab.index)
    head = parameter_mask(original.model, ["a1.h0"], original.encoder.vocab.index)
    moved = {
        name: not torch.equal(new[head[name]], old[head[name]])
        for (name, new), old in zip(result.model.model.named_parameters(), original.model.parameters(), strict=True)
        if head[name].any()
    }
    assert any(moved.values()), "the head outside the circuits must be updated in the ablation"
    assert result.params_updated == sum(int(m.sum()) for m in masks.values())
    assert result.groups_used == {"forget-specific": 1, "retain-specific": 0, "task-shared": 3}


def test_unknown_method_and_missing_groups_are_clear_errors(setup):
    ws, request, original, _ = setup
    with pytest.raises(ValidationError, match="cure-nocircuit"):  # the error lists the methods
        UnlearnConfig(method="magic")
    with pytest.raises(CureError, match="needs module groups"):
        unlearn(original, ws.data.samples, ws.data.sets(request), request, UnlearnConfig(method="cure"))


def test_exploding_loss_stops_and_keeps_the_original(setup):
    ws, request, original, _ = setup
    sha = [p.detach().clone() for p in original.model.parameters()]
    with pytest.raises(UnlearningDiverged, match="diverged"):
        unlearn(
            original,
            ws.data.samples,
            ws.data.sets(request),
            request,
            UnlearnConfig(method="ga", strength=5.0, steps=200, batch_size=32),
        )
    assert all(torch.equal(a, b) for a, b in zip(sha, original.model.parameters(), strict=True))


def test_cli_unlearn_and_compare_keep_the_checkpoint_and_write_outputs(capsys, tmp_path, synthetic, monkeypatch):
    monkeypatch.setattr("cure_core.model.backends.item.Recipe", lambda: TINY_RECIPE)
    data = str(write_grouplens(tmp_path / "ml", synthetic))
    ws = Workspace.open(data=data, recipe=TINY_RECIPE)
    original = ws.models.original(quiet=True)
    checkpoint_sha = file_sha256(original.path / "model.safetensors")
    quick = ["--steps", "4", "--batch-size", "16", "--data", data]
    assert cli.main(["unlearn", "--method", "cure", "--strength", "1e-3", *quick]) == 0
    out = capsys.readouterr().out
    assert "JSD to Retrain" in out and "parameters updated" in out
    run = next(line for line in out.splitlines() if line.startswith("run ")).split()[1].rstrip(":")
    report = load_report(run)
    assert report is not None and report.method == "cure"
    assert (
        cli.main(["compare", "--methods", "npo,cure", "--strengths", "1e-3", "--out", str(tmp_path / "cmp"), *quick])
        == 0
    )
    assert (tmp_path / "cmp" / "pareto.html").read_text().count("plotly") > 0
    table = pd.read_csv(tmp_path / "cmp" / "comparison.csv")
    assert list(table["method"])[:2] == ["Original", "Retrain"] and len(table) == 4
    assert file_sha256(original.path / "model.safetensors") == checkpoint_sha
    assert cli.main(["unlearn", "--method", "magic", *quick]) == 2
    assert "invalid choice: 'magic'" in capsys.readouterr().err


def test_runs_are_cached(setup, monkeypatch):
    ws, request, _, cache = setup
    monkeypatch.setenv("CURE_CACHE", str(cache))
    config = UnlearnConfig(method="npo", strength=1e-3, steps=3, batch_size=16, probe_size=16)
    first = get_run(ws, request, config, quiet=True)

    def fail(*args, **kwargs):
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr("cure_core.unlearning.runs.unlearn", fail)
    assert get_run(ws, request, config, quiet=True).jsd_to_retrain == first.jsd_to_retrain


def test_cure_row_reset_makes_forgotten_users_read_as_unknown(setup):
    """With only the forgotten users' rows in the forget group and the reset rule, the model
    answers their prompts exactly as the original answers an unknown user."""
    ws, request, original, _ = setup
    sets = ws.data.sets(request)
    rows = [f"u:{u}" for u in request.users]
    table = pd.DataFrame({"module": rows, "kind": "user row", "group": "forget-specific"})
    groups = ModuleGroups(table=table, separability={}, settings=GroupSettings(), warnings=[])
    config = UnlearnConfig(method="cure", strength=1e-3, steps=2, batch_size=16, probe_size=16, row_rule="reset")
    result = unlearn(original, ws.data.samples, sets, request, config, groups)
    idx = sets.forget[:100]
    unknown = original.last_logits(original.encode(ws.data.samples, idx, np.zeros(len(idx), bool))).detach()
    expected = (unknown[:, original.encoder.yes_id] - unknown[:, original.encoder.no_id]).numpy()
    assert_close(result.model.predict(ws.data.samples, idx).margin, expected)
    assert result.params_updated == len(rows) * original.model.config.n_embd


def test_cli_groups_prints_the_table_separability_and_sizes(capsys, tmp_path, synthetic, monkeypatch):
    monkeypatch.setattr("cure_core.model.backends.item.Recipe", lambda: TINY_RECIPE)
    data = str(write_grouplens(tmp_path / "ml", synthetic))
    argv = [
        "groups",
        "--prompts",
        "32",
        "--eval-prompts",
        "8",
        "--batch-size",
        "16",
        "--draws",
        "3",
        "--csv",
        str(tmp_path / "g.csv"),
        "--data",
        data,
    ]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "separability" in out and "3 matched control draws" in out and "group sizes" in out
    table = pd.read_csv(tmp_path / "g.csv")
    assert {"module", "importance_forget", "importance_retain", "null", "group"} <= set(table.columns)
    assert set(table["group"]) <= {"forget-specific", "retain-specific", "task-shared", "outside"}
    assert (
        table["module"].str.startswith("u:") & (table["group"] == "forget-specific")
    ).sum() == 5  # the forgotten users' rows
    assert cli.main(["groups", "--threshold", "-1", "--data", data]) == 2
    assert "--threshold: the share rule needs a threshold in (0, 1]" in capsys.readouterr().err


def test_a_cancelled_run_stops_saves_nothing_and_keeps_the_original(setup, monkeypatch):
    from cure_core.jobs import BackgroundJob
    from cure_core.unlearning.runs import run_dir

    ws, request, original, cache = setup
    monkeypatch.setenv("CURE_CACHE", str(cache))
    before = [p.detach().clone() for p in original.model.parameters()]
    config = UnlearnConfig(method="npo", strength=1e-3, steps=5000, batch_size=16, probe_every=1000, probe_size=16)
    started = []
    job = BackgroundJob(
        "cancel-test",
        lambda progress: get_run(ws, request, config, progress=progress, callback=started.append, quiet=True),
    )
    for _ in range(300):
        if started:
            break
        time.sleep(0.05)
    job.cancel()
    job.join(60)
    assert job.finished and job.error is not None and "cancelled" in job.error
    assert len(started) < config.steps
    saved = [load_report(folder.name) for folder in run_dir("any").parent.iterdir()]
    assert not any(report and report.config.steps == config.steps for report in saved), (
        "a cancelled run must not be saved"
    )
    assert all(torch.equal(a, b) for a, b in zip(before, original.model.parameters(), strict=True))


def test_random_groups_keep_each_kinds_group_sizes_and_the_run_acts_on_the_drawn_modules(setup):
    """The random-groups control: per module kind the same number of modules in each group,
    embedding rows as they were, the draw fixed by the run's seed; its run is exactly CURE on
    the drawn groups."""
    ws, request, original, _ = setup
    row = f"u:{request.users[0]}"
    heads, mlps = ["forget-specific", "outside", "outside", "task-shared"], ["task-shared", "outside"]
    table = pd.DataFrame(
        {
            "module": ["a0.h0", "a0.h1", "a1.h0", "a1.h1", "m0", "m1", row],
            "kind": ["head"] * 4 + ["mlp"] * 2 + ["user row"],
            "group": [*heads, *mlps, "forget-specific"],
        }
    )
    groups = ModuleGroups(table=table, separability={}, settings=GroupSettings(), warnings=[])
    drawn = groups.shuffled(seed=3)
    assert not drawn.table["group"].equals(table["group"]), "seed 3 draws other modules than the circuits chose"
    assert drawn.table["module"].tolist() == table["module"].tolist()
    counts = ["kind", "group"]
    assert drawn.table.groupby(counts).size().equals(table.groupby(counts).size())
    assert drawn.table.set_index("module").loc[row, "group"] == "forget-specific"
    assert drawn.table.equals(groups.shuffled(seed=3).table) and groups.table.equals(table), "seeded, original kept"
    assert any("control" in w for w in drawn.warnings)
    config = {"strength": 3e-3, "steps": 3, "batch_size": 32, "probe_size": 32, "forget_loss": "teacher", "seed": 3}
    sets = ws.data.sets(request)
    control = unlearn(original, ws.data.samples, sets, request, UnlearnConfig(method="cure-random", **config), groups)
    direct = unlearn(original, ws.data.samples, sets, request, UnlearnConfig(method="cure", **config), drawn)
    assert all(
        torch.equal(a, b)
        for a, b in zip(control.model.model.parameters(), direct.model.model.parameters(), strict=True)
    )
    assert control.groups_used == direct.groups_used and control.params_updated == direct.params_updated
