"""Module groups from planted attribution scores (thresholds, noise, one wild batch, embedding
rows) and the gradient combinations PCGrad and SAGO: no model trained."""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
import pytest
import torch
from planted import planted_attribution

from analysis.circuit import share_count
from analysis.graph import GraphShape
from cure_core.groups import GroupSettings, ModuleGroups, group_modules, importance, in_circuit
from cure_core.unlearning.combine import pcgrad, sago

SHAPE = GraphShape(2, 2)  # modules a0.h0 a0.h1 m0 a1.h0 a1.h1 m1


_attribution = partial(planted_attribution, SHAPE)  # planted node scores, other edges zero


def _planted(forget_boost: int | None = 3, retain_boost: int | None = 5) -> ModuleGroups:
    base = np.array([0.0, 1, 1, 1, 1, 1, 1])  # input, then the six modules
    forget, retain = base.copy(), base.copy()
    if forget_boost is not None:
        forget[forget_boost] = 6.0
        retain[forget_boost] = 0.05
    if retain_boost is not None:
        retain[retain_boost] = 6.0
        forget[retain_boost] = 0.05
    controls = [_attribution(retain, noise=0.05, seed=s) for s in range(5)]  # matched sets drawn from retain
    return group_modules(SHAPE, _attribution(forget), _attribution(retain), controls, GroupSettings(threshold=0.9))


def test_planted_scores_give_the_planted_groups():
    groups = _planted()
    by_module = dict(zip(groups.table["module"], groups.table["group"], strict=True))
    assert by_module["m0"] == "forget-specific"  # source index 3
    assert by_module["a1.h1"] == "retain-specific"  # source index 5
    assert {by_module[m] for m in ("a0.h0", "a0.h1", "a1.h0", "m1")} == {"task-shared"}
    assert groups.separability["separability"] > 3
    assert groups.sizes().loc["forget-specific", "mlp"] == 1


def test_noise_alone_gives_no_specific_modules_and_warns():
    base = np.array([0.0, 1, 2, 3, 1, 2, 3])
    controls = [_attribution(base, noise=0.3, seed=s) for s in range(5)]
    groups = group_modules(
        SHAPE, _attribution(base, noise=0.1, seed=11), _attribution(base, noise=0.1, seed=12), controls, GroupSettings()
    )
    assert not groups.members("forget-specific") and not groups.members("retain-specific")
    assert any("no module is forget-specific" in w for w in groups.warnings)


def test_median_aggregation_resists_one_wild_batch():
    scores = np.array([0.0, 1, 1, 1, 1, 1, 1])
    attribution = _attribution(scores, n_batches=5)
    attribution.batch_scores[0, 2, SHAPE.logits_dst] = 50.0  # one batch swings a0.h1 by 50×
    assert importance(attribution)[1] == pytest.approx(1 / 6, rel=1e-6)


def test_threshold_rules():
    values = np.array([0.5, 0.3, 0.1, 0.1])
    assert in_circuit(values, "share", 0.8).tolist() == [True, True, False, False]
    assert in_circuit(values, "absolute", 0.2).tolist() == [True, True, False, False]
    assert in_circuit(values, "quantile", 0.5).sum() == 2
    for share in (0.0, 0.5, 0.81, 1.0):  # modules follow the circuits' cumulative-share rule
        assert in_circuit(values, "share", share).sum() == share_count(np.sort(values)[::-1], share)


def test_embedding_rows_used_only_by_forget_prompts_are_forget_specific():
    base = np.array([0.0, 1, 1, 1, 1, 1, 1])
    usage = pd.DataFrame({"module": ["u:1", "u:2", "i:7"], "forget": [30, 0, 5], "retain": [0, 40, 50]})
    groups = group_modules(SHAPE, _attribution(base), _attribution(base), [_attribution(base)], GroupSettings(), usage)
    assert groups.members("forget-specific") == ["u:1"]
    assert "user row" in groups.kinds


def test_pcgrad_never_opposes_the_retain_gradient_and_sago_takes_it_on_conflicts():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        g_f, g_r = torch.randn(50, generator=g), torch.randn(50, generator=g)
        assert torch.dot(pcgrad(g_f, g_r, 1.0, 0.0), g_r) >= -1e-5
        combined = sago(g_f, g_r, 2.0, 0.5)
        conflict = g_f * g_r < 0
        assert torch.equal(combined[conflict], 0.5 * g_r[conflict]) and torch.equal(
            combined[~conflict], 2.0 * g_f[~conflict]
        )
